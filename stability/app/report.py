"""The report every analysis writes into: one section per analysis, ``summary.json`` + ``report.md`` + PNGs,
and ``manifest.json``, the list of every file the run wrote.

``summary.json`` maps each section key to that section's numbers; ``report.md`` holds the sections in the
order they were added. Both are rewritten atomically after every section, so an interrupted run keeps
everything finished so far — and says so: until :meth:`Report.finish` runs, ``report.md`` opens with an
**INCOMPLETE** line (with the reason when the run failed or was interrupted, see :meth:`Report.running`).

Output directories (:func:`check_out_dir`): a run writes into a new or empty directory, or into the directory
of an earlier run, whose files (those listed in its ``manifest.json``) are removed first, so no stale figure
of an earlier run is left beside the new report. A directory holding files no run recorded is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, IO, Iterator, Literal

from stability.core.io import atomic_write, write_json, write_text

__all__ = ["Report", "Section", "machine_description", "check_out_dir", "check_out_file", "MANIFEST", "Status"]

MANIFEST = "manifest.json"
"""The file, in every results directory, that lists what the run wrote (and its status)."""

Status = Literal["running", "complete", "incomplete"]


def machine_description() -> str:
    """e.g. ``"2-core CPU (x86_64)"`` or ``"1× NVIDIA H100 80GB HBM3 GPU"`` — the hardware a number came from."""
    import jax

    devs = jax.devices()
    if devs and devs[0].platform == "gpu":
        kinds = {d.device_kind for d in devs}
        return f"{len(devs)}× {' / '.join(sorted(kinds))} GPU"
    return f"{os.cpu_count()}-core CPU ({platform.machine()})"


# --------------------------------------------------------------------------- output paths


def _creatable(path: Path, option: str) -> None:
    """Refuse a path below a file or below a directory this user cannot write into."""
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"{option}: {path} cannot be created: {parent} is a file, not a directory")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: {path} cannot be created: no permission to write into {parent}")


def _previous_run(out: Path) -> list[str] | None:
    """The files an earlier run recorded in ``out/manifest.json`` (None: no readable manifest)."""
    try:
        m = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    files = m.get("files") if isinstance(m, dict) else None
    if m.get("format") != "stability-run" or not isinstance(files, list) or \
            not all(isinstance(f, str) and "/" not in f and f not in ("", ".", "..") for f in files):
        return None
    return files


def check_out_dir(out: str | os.PathLike, option: str = "--out") -> list[Path]:
    """Check a results directory before any work starts; returns the earlier run's files to remove.

    Allowed: a path that can be created, an empty directory, or the directory of an earlier run (it has a
    ``manifest.json``; the files it lists are stale and are removed when the new :class:`Report` starts).
    Refused with a one-line ``ValueError`` naming ``option``: a file, a path below a file, a directory
    without write permission, a directory holding files that no run recorded (hidden files aside)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option}: {out} is a file; give a directory for the results")
    if not out.exists():
        _creatable(out, option)
        return []
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: no permission to write into {out}")
    present = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if not present:
        return []
    recorded = _previous_run(out)
    if recorded is None:
        shown = ", ".join(present[:4]) + (f", … ({len(present)} entries)" if len(present) > 4 else "")
        raise ValueError(f"{option}: {out} is not empty and holds no {MANIFEST} of an earlier stability run "
                         f"({shown}); give a new or empty directory")
    foreign = [n for n in present if n not in recorded and n != MANIFEST]
    if foreign:
        shown = ", ".join(foreign[:4]) + (", …" if len(foreign) > 4 else "")
        raise ValueError(f"{option}: {out} holds files the earlier run there did not write ({shown}); give a new "
                         f"or empty directory")
    return [out / n for n in recorded + [MANIFEST] if (out / n).is_file()]


def check_out_file(path: str | os.PathLike, option: str = "--out", suffix: str = ".npz",
                   is_ours: Callable[[Path], bool] | None = None) -> Path:
    """Check an output FILE path (a checkpoint) before any work: it ends in ``suffix``, is not a directory, can
    be created, and an existing file there is one ``is_ours`` accepts (an earlier checkpoint), never a
    foreign file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option}: {path} is a directory; give a checkpoint file path such as {path / ('net' + suffix)}")
    if path.suffix != suffix:
        raise ValueError(f"{option}: a checkpoint path must end in {suffix} (its JSON side-car gets the same name "
                         f"with .json), got {str(path)!r}")
    _creatable(path, option)
    if path.exists() and is_ours is not None and not is_ours(path):
        raise ValueError(f"{option}: {path} exists and is not a stability checkpoint; refusing to overwrite it")
    return path


# --------------------------------------------------------------------------- sections and the report


@dataclasses.dataclass
class Section:
    key: str
    title: str
    lines: list[str] = dataclasses.field(default_factory=list)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def text(self, md: str) -> "Section":
        self.lines.append(md.rstrip() + "\n")
        return self

    def finding(self, md: str) -> "Section":
        """The section's opening: one or two plain sentences stating what was found, with its numbers."""
        return self.text(f"**Finding.** {md.strip()}")

    def table(self, header: list[str], rows: list[list[Any]]) -> "Section":
        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:.4g}"
            return str(v)

        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
        return self.text("\n".join(out))


def _reason(e: BaseException) -> str:
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    if isinstance(e, SystemExit):
        return f"the process was asked to exit (SystemExit {e.code})"
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


class Report:
    """A results directory: ``Report(out).section(key, title)`` … ``report.add(section)``; run the work inside
    ``with report.running():`` so the report ends either finished or marked INCOMPLETE with the reason.

    Creating a report checks ``out`` (:func:`check_out_dir`), removes the files of an earlier run there and
    writes an INCOMPLETE ``report.md`` and a ``manifest.json`` at once."""

    def __init__(self, out: str | os.PathLike, title: str = "Mode connectivity report") -> None:
        self.out = Path(out)
        stale = check_out_dir(self.out, "out")
        for p in stale:
            p.unlink()
        self.removed = [p.name for p in stale if p.name != MANIFEST]
        self.out.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.sections: list[Section] = []
        self.started = time.time()
        self.status: Status = "running"
        self.reason: str | None = None
        self.files: list[str] = []
        self.meta: dict[str, Any] = {"machine": machine_description()}
        self.write()

    def section(self, key: str, title: str) -> Section:
        if any(s.key == key for s in self.sections):
            raise ValueError(f"report already has a section {key!r}")
        return Section(key, title)

    def register(self, name: str) -> Path:
        """Record ``name`` (a file directly in the results directory) in the manifest; returns its path."""
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"report files live directly in {self.out}, got {name!r}")
        if name not in self.files:
            self.files.append(name)
        return self.out / name

    def write_file(self, name: str, write: Callable[[IO[bytes]], None]) -> Path:
        """Write one more result file atomically (``write(f)`` on a binary file) and record it."""
        path = self.register(name)
        atomic_write(path, write)
        self._write_manifest()
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        """Write a JSON result file (NaN as null) and record it."""
        path = self.register(name)
        write_json(path, obj)
        self._write_manifest()
        return path

    def figure(self, section: Section, fig: Any, name: str, caption: str) -> Path:
        """Save a figure as ``name`` (PNG, atomically) and reference it from ``section``."""
        from stability.plots import save_png

        path = self.write_file(name, lambda f: save_png(fig, f))
        section.text(f"![{caption}]({name})\n\n*{caption}*")
        section.data.setdefault("figures", []).append(name)
        return path

    def add(self, section: Section) -> None:
        """Append a finished section and rewrite ``summary.json`` and ``report.md``."""
        self.sections.append(section)
        self.write()

    # -- status -----------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator["Report"]:
        """Run the work: on success the report is finished (:meth:`finish`); on any exception, including
        KeyboardInterrupt, it is marked INCOMPLETE with the reason (:meth:`fail`) and the exception goes on."""
        try:
            yield self
        except BaseException as e:
            self.fail(_reason(e))
            raise
        else:
            if self.status == "running":
                self.finish()

    def finish(self) -> None:
        """Mark the run complete and write everything."""
        self.status, self.reason = "complete", None
        self.write()

    def fail(self, reason: str) -> None:
        """Mark the run INCOMPLETE with ``reason`` and write what was finished."""
        self.status, self.reason = "incomplete", reason
        with contextlib.suppress(OSError):
            self.write()

    def _status_line(self) -> str:
        n = len(self.sections)
        if self.status == "complete":
            return ""
        if self.status == "incomplete":
            return (f"**INCOMPLETE**: the run stopped before it finished — {self.reason}. Only the {n} section(s) "
                    f"below were finished; do not read this report as the full result.\n")
        return (f"**INCOMPLETE**: the run had not finished when this was written ({n} section(s) so far); if "
                f"nothing is still running, it was killed.\n")

    def _write_manifest(self) -> None:
        manifest = {"format": "stability-run", "version": 1, "status": self.status, "reason": self.reason,
                    "title": self.title, "command": self.meta.get("command"),
                    "started": datetime.datetime.fromtimestamp(self.started).isoformat(timespec="seconds"),
                    "wall_seconds": self.meta.get("wall_seconds"), "files": sorted(self.files)}
        write_json(self.out / MANIFEST, manifest)

    def write(self) -> None:
        self.meta["wall_seconds"] = round(time.time() - self.started, 2)
        self.meta["status"] = self.status
        if self.reason:
            self.meta["reason"] = self.reason
        else:
            self.meta.pop("reason", None)
        self.register("summary.json")
        self.register("report.md")
        summary = {"meta": self.meta, **{s.key: s.data for s in self.sections}}
        write_json(self.out / "summary.json", summary)
        wall = "Wall time" if self.status == "complete" else "Wall time so far"
        md = [f"# {self.title}\n"]
        status = self._status_line()
        if status:
            md.append(status)
        md.append(f"Machine: {self.meta['machine']}. {wall}: {self.meta['wall_seconds']:.1f} s. Files: "
                  f"`{MANIFEST}` lists every file this run wrote.\n")
        if "command" in self.meta:
            md.append(f"Command: `{self.meta['command']}`\n")
        facts = [f"{k.capitalize()}: {self.meta[k]}" for k in ("seed", "scale", "paper") if k in self.meta]
        if facts:
            md.append(". ".join(facts) + ".\n")
        for s in self.sections:
            md.append(f"\n## {s.title}\n")
            md.extend(s.lines)
        write_text(self.out / "report.md", "\n".join(md))
        self._write_manifest()
