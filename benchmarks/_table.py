"""Shared output of the benchmark scripts: print the result table and the ratio, and append the
table to a markdown file under a heading that names the command and date."""

from __future__ import annotations

import os
import sys
import time


def emit(rows: list[tuple[str, str]], ratio: float, out: str | None, header: str | None = None) -> str:
    """Print ``rows`` as a markdown table and ``RATIO``; append to ``out`` (``header`` first if it is new)."""
    table = "\n".join(["| quantity | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])
    print(table)
    print(f"RATIO {ratio:.2f}")
    if out:
        cmd = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
        new = not os.path.exists(out)
        with open(out, "a") as f:
            if new and header:
                f.write(header)
            f.write(f"\n### {time.strftime('%Y-%m-%d')} — `{cmd}`\n\n{table}\n")
    return table
