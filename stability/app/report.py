"""The report every analysis writes into: one section per analysis, ``summary.json`` + ``report.md`` + PNGs.

``summary.json`` maps each section key to that section's numbers; ``report.md`` holds the
sections in the order they were added. Both are rewritten atomically after every section,
so an interrupted run keeps everything finished so far.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from pathlib import Path
from typing import Any

from stability.core.io import atomic_write, write_json, write_text

__all__ = ["Report", "Section", "machine_description"]


def machine_description() -> str:
    """e.g. ``"2-core CPU (x86_64)"`` or ``"1× NVIDIA H100 80GB HBM3 GPU"`` — the hardware a number came from."""
    import jax

    devs = jax.devices()
    if devs and devs[0].platform == "gpu":
        kinds = {d.device_kind for d in devs}
        return f"{len(devs)}× {' / '.join(sorted(kinds))} GPU"
    return f"{os.cpu_count()}-core CPU ({platform.machine()})"


@dataclasses.dataclass
class Section:
    key: str
    title: str
    lines: list[str] = dataclasses.field(default_factory=list)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def text(self, md: str) -> "Section":
        self.lines.append(md.rstrip() + "\n")
        return self

    def table(self, header: list[str], rows: list[list[Any]]) -> "Section":
        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:.4g}"
            return str(v)

        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
        return self.text("\n".join(out))


class Report:
    """A results directory: ``Report(out).section(key, title)`` … ``report.add(section)``."""

    def __init__(self, out: str | os.PathLike, title: str = "Mode connectivity report") -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.sections: list[Section] = []
        self.started = time.time()
        self.meta: dict[str, Any] = {"machine": machine_description()}

    def section(self, key: str, title: str) -> Section:
        if any(s.key == key for s in self.sections):
            raise ValueError(f"report already has a section {key!r}")
        return Section(key, title)

    def figure(self, section: Section, fig: Any, name: str, caption: str) -> Path:
        """Save a figure as ``name`` (PNG, atomically) and reference it from ``section``."""
        from stability.plots import save_png

        path = self.out / name
        atomic_write(path, lambda f: save_png(fig, f))
        section.text(f"![{caption}]({name})\n\n*{caption}*")
        section.data.setdefault("figures", []).append(name)
        return path

    def add(self, section: Section) -> None:
        """Append a finished section and rewrite ``summary.json`` and ``report.md``."""
        self.sections.append(section)
        self.write()

    def write(self) -> None:
        self.meta["wall_seconds"] = round(time.time() - self.started, 2)
        summary = {"meta": self.meta, **{s.key: s.data for s in self.sections}}
        write_json(self.out / "summary.json", summary)
        md = [f"# {self.title}\n", f"Machine: {self.meta['machine']}. Wall time so far: "
              f"{self.meta['wall_seconds']:.1f} s.\n"]
        if "command" in self.meta:
            md.append(f"Command: `{self.meta['command']}`\n")
        facts = [f"{k.capitalize()}: {self.meta[k]}" for k in ("seed", "scale", "paper") if k in self.meta]
        if facts:
            md.append(". ".join(facts) + ".\n")
        for s in self.sections:
            md.append(f"\n## {s.title}\n")
            md.extend(s.lines)
        write_text(self.out / "report.md", "\n".join(md))
