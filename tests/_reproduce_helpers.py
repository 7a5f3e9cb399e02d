"""Shared by the `stability reproduce` tests: one quick run into a temporary directory and its outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stability.app import reproduce


def summary(out: Path) -> dict[str, Any]:
    """The run's ``summary.json``."""
    return json.loads((out / "summary.json").read_text())


def quick_run(tmp_path_factory, name: str, overrides: dict[str, str] | None = None
              ) -> tuple[Path, dict[str, Any]]:
    """``stability reproduce NAME --quick [--set K=V ...]`` into a fresh temporary directory: ``(out, headline)``."""
    out = tmp_path_factory.mktemp(name)
    return out, reproduce.run(name, out, quick=True, overrides=overrides)
