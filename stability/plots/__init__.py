"""Every matplotlib figure of the house (the only package that imports matplotlib): functions that take result
objects and return figures; the app layer saves them."""

from typing import IO, Any

__all__ = ["save_png"]


def save_png(fig: Any, f: IO[bytes], dpi: int = 120) -> None:
    """Write ``fig`` as PNG into the open binary file ``f`` and release it (pyplot keeps every open figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
