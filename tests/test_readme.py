"""The README's API tour runs as written (with fewer training steps)."""

from __future__ import annotations

import re
from pathlib import Path


def test_readme_api_tour_runs(tmp_path, monkeypatch):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = [b.replace("steps=2000", "steps=50") for b in re.findall(r"```python\n(.*?)```", text, re.S)]
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    assert scope["res"].loss.shape == (121,)
    assert (tmp_path / "a.npz").exists()
    exec(compile(blocks[1], "README.md", "exec"), scope)  # paths, certificates, cushions, curves
    assert scope["cert"].ok and scope["path"].n_segments == scope["v"].n_segments
    assert 0 < scope["row"]["row"]["length ratio"] < 10
