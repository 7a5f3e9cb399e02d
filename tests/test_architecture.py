"""The house rules of docs/ARCHITECTURE.md, checked on the source: floors import only downward, no import cycle
(hidden or not), one hidden-unit view, matplotlib only under stability.plots, proofs_check only from the app."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FLOORS = {  # package prefix → floor (a module may import its own package and lower floors only)
    "stability.core": 1, "stability.data": 1,
    "stability.theory": 2, "stability.curves": 2,
    "stability.plots": 3,
    "proofs_check": 4,
    "stability.app": 5,
}
SIBLINGS_FORBIDDEN = {("stability.core", "stability.data"), ("stability.data", "stability.core"),
                      ("stability.theory", "stability.curves"), ("stability.curves", "stability.theory")}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in ("stability", "proofs_check"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _package(mod: str) -> str | None:
    for prefix in sorted(FLOORS, key=len, reverse=True):
        if mod == prefix or mod.startswith(prefix + "."):
            return prefix
    return None


def _imports(mod: str, path: Path) -> set[str]:
    """Every house module ``mod`` imports, at module level or inside functions (resolved to modules)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = mod.split(".")
                parts = parts if is_pkg else parts[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for n in names:
            while n and n not in MODULES:
                n = n.rpartition(".")[0]
            if n and n != mod:
                found.add(n)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def floor_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in graph.items():
        src = _package(mod)
        if src is None:  # the package faces stability/__init__ and proofs_check/__init__ hand names on
            continue
        for dep in deps:
            dst = _package(dep)
            if dst is None or dst == src:
                continue
            if FLOORS[dst] >= FLOORS[src] or (src, dst) in SIBLINGS_FORBIDDEN:
                bad.append(f"{mod} (floor {FLOORS[src]}) imports {dep} (floor {FLOORS[dst]})")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles between modules (package faces, which only hand names on, are skipped)."""
    faces = {m for m in graph if m in ("stability", "proofs_check") or MODULES.get(m, Path()).name == "__init__.py"}
    seen: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if d in faces:
                continue
            if seen.get(d) == 1:
                found.append(stack[stack.index(d):] + [d])
            elif d not in seen:
                visit(d)
        stack.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen and m not in faces:
            visit(m)
    return found


def test_floors_import_only_downward():
    bad = floor_violations(GRAPH)
    assert not bad, "\n".join(bad)


def test_no_import_cycles_hidden_or_not():
    found = cycles(GRAPH)
    assert not found, "\n".join(" → ".join(c) for c in found)


def test_the_rule_checkers_reject_tampered_graphs():
    """Negative controls: an upward import planted in a core module and a planted cycle are both reported."""
    upward = {**GRAPH, "stability.core.losses": GRAPH["stability.core.losses"] | {"stability.app.report"}}
    assert floor_violations(upward) == ["stability.core.losses (floor 1) imports stability.app.report (floor 5)"]
    looped = {**GRAPH, "stability.core.nets": GRAPH["stability.core.nets"] | {"stability.core.train"}}
    assert any(c[0] == c[-1] and "stability.core.nets" in c for c in cycles(looped))


def test_only_nets_and_units_subscript_layers():
    pattern = re.compile(r"""\[\s*["'][wb]["']\s*\]""")
    allowed = {"stability.core.nets", "stability.core.units"}
    bad = [f"{m}:{i}" for m, p in MODULES.items() if m not in allowed
           for i, line in enumerate(p.read_text().splitlines(), start=1) if pattern.search(line)]
    assert not bad, bad


def test_matplotlib_only_under_plots():
    bad = [m for m, p in MODULES.items() if not m.startswith("stability.plots")
           and re.search(r"^\s*(import|from) matplotlib", p.read_text(), re.M)]
    assert not bad, bad


@pytest.mark.parametrize("floor", ["stability.core", "stability.data", "stability.theory", "stability.curves",
                                   "stability.plots"])
def test_library_floors_do_not_import_proofs_check(floor):
    bad = [m for m, deps in GRAPH.items() if _package(m) == floor and any(d.startswith("proofs_check") for d in deps)]
    assert not bad, bad


def test_proofs_check_stands_on_core_and_theory_only():
    bad = [f"{m} imports {d}" for m, deps in GRAPH.items() if m.startswith("proofs_check") for d in deps
           if d.startswith("stability") and _package(d) not in ("stability.core", "stability.theory")]
    assert not bad, bad
