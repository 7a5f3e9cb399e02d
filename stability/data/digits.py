"""scikit-learn's bundled 8×8 digits (the default data: no download, no network)."""

from __future__ import annotations


import numpy as np

from stability.data.dataset import Dataset, _LAYOUTS, _check_choice, _check_count, _prefix, _sha256


def _load_digits(
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    layout: str = "flat",
    n_train: int | None = None,
    n_test: int | None = None,
) -> Dataset:
    """scikit-learn's bundled 8×8 digits, values /16, stratified split by ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise TypeError(f"test_fraction must be a float, got {test_fraction!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    _check_choice("layout", layout, _LAYOUTS)
    n_train = _check_count("n_train", n_train, allow_none=True)
    n_test = _check_count("n_test", n_test, allow_none=True)

    x, y = load_digits(return_X_y=True)
    x = (np.asarray(x, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(y, dtype=np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=float(test_fraction), random_state=int(seed), stratify=y
    )
    x_tr, y_tr = _prefix(x_tr, n_train, "n_train"), _prefix(y_tr, n_train, "n_train")
    x_te, y_te = _prefix(x_te, n_test, "n_test"), _prefix(y_te, n_test, "n_test")
    image_shape = (8, 8, 1)
    shape = image_shape if layout == "image" else (64,)
    return Dataset(
        np.ascontiguousarray(x_tr.reshape((-1, *shape))),
        np.ascontiguousarray(y_tr),
        np.ascontiguousarray(x_te.reshape((-1, *shape))),
        np.ascontiguousarray(y_te),
        name="digits",
        task="classification",
        num_classes=10,
        input_shape=shape,
        meta={
            "source": "sklearn.datasets.load_digits",
            "sha256": {"digits": _sha256(np.ascontiguousarray(x).tobytes() + y.tobytes())},
            "scale": "pixel / 16",
            "normalization": None,
            "seed": int(seed),
            "test_fraction": float(test_fraction),
            "split": "stratified (sklearn train_test_split)",
            "layout": layout,
            "image_shape": image_shape,
        },
    )
