"""Every matplotlib figure of the house (the only package that imports matplotlib): functions that take result
objects and return figures; the app layer saves them.

Conventions every figure follows: labelled axes with units, a log scale where the series differ by orders of
magnitude (:func:`wants_log`), distinct line styles and markers (:data:`STYLES`) so no series hides another,
and legends outside the data (:func:`legend_outside`, :func:`legend_below`)."""

from typing import IO, Any, Sequence

__all__ = ["save_png", "wants_log", "STYLES", "legend_outside", "legend_below"]

STYLES: tuple[dict[str, Any], ...] = (
    {"ls": "-", "marker": "o"}, {"ls": "--", "marker": "s"}, {"ls": "-.", "marker": "^"},
    {"ls": ":", "marker": "D"}, {"ls": (0, (5, 1, 1, 1)), "marker": "v"}, {"ls": (0, (1, 1)), "marker": "P"},
)
"""Line style + marker per series, in order (markers are drawn sparsely with ``markevery``)."""


def wants_log(*series: Sequence[float], ratio: float = 30.0) -> bool:
    """True when the positive values of ``series`` span more than ``ratio`` (then a log axis shows them all)."""
    import numpy as np

    vals = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in series]) if series else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0 or np.any(vals <= 0):
        return False
    return float(vals.max() / vals.min()) > ratio


def legend_outside(ax: Any, **kw: Any) -> Any:
    """A legend to the right of ``ax``, outside the data."""
    kw.setdefault("fontsize", 8)
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False, **kw)


def legend_below(fig: Any, handles: Sequence[Any], labels: Sequence[str], ncol: int | None = None,
                 y: float = -0.02) -> Any:
    """One legend for the whole figure, centred below the axes."""
    return fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, y), frameon=False, fontsize=8,
                      ncol=ncol or min(4, max(1, len(labels))))


def save_png(fig: Any, f: IO[bytes], dpi: int = 120) -> None:
    """Write ``fig`` as PNG into the open binary file ``f`` and release it (pyplot keeps every open figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
