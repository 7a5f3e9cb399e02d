"""The README's API tour runs as written (with fewer training steps)."""

from __future__ import annotations

import re
from pathlib import Path


def test_readme_api_tour_runs(tmp_path, monkeypatch):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0].replace("steps=2000", "steps=50")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["res"].loss.shape == (121,)
    assert (tmp_path / "a.npz").exists()
