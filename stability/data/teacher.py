"""Teacher–student data: Gaussian inputs labelled by a random ReLU teacher MLP."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from stability.data.dataset import Dataset, _TASKS, _check_bool, _check_choice, _check_count


# --------------------------------------------------------------------------
# teacher–student
# --------------------------------------------------------------------------


_TEACHER_REF_SAMPLES = 8192


def teacher_apply(teacher: Sequence[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Outputs of a teacher MLP ``[(W, b), ...]`` (``W`` of shape (in, out)) in float64; ReLU between layers."""
    h = np.asarray(x, dtype=np.float64)
    for i, (w, b) in enumerate(teacher):
        h = h @ np.asarray(w, dtype=np.float64) + np.asarray(b, dtype=np.float64)
        if i < len(teacher) - 1:
            h = np.maximum(h, 0.0)
    return h


def _make_teacher(
    *,
    seed: int = 0,
    n_train: int = 2048,
    n_test: int = 512,
    dim: int = 20,
    hidden: Sequence[int] = (32,),
    outputs: int | None = None,
    task: str = "classification",
    noise: float = 0.0,
    bias_std: float = 0.0,
    center: bool = True,
) -> Dataset:
    """Gaussian inputs labelled by a seeded random ReLU MLP (He-init weights).

    Biases are ``bias_std`` × N(0, 1) (zero by default); with ``center`` the
    output bias additionally subtracts the teacher's mean output over an
    independent reference sample, which keeps the argmax classes roughly
    balanced (an uncentred ReLU teacher often leaves some classes empty).

    Classification: labels are ``argmax`` of teacher outputs (``outputs``
    classes, default 10), with ``noise`` × N(0, 1) added to the logits first.
    Regression: targets are the ``outputs`` (default 1) teacher outputs plus
    ``noise`` × N(0, 1), shape (N, outputs).  Teacher weights, the train inputs,
    the test inputs and each noise draw use independent streams of ``seed``, so
    e.g. changing ``n_test`` leaves the training set unchanged.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    n_train = _check_count("n_train", n_train)
    n_test = _check_count("n_test", n_test)
    dim = _check_count("dim", dim)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise TypeError(f"hidden must be a sequence of positive ints, got {hidden!r}")
    hidden = tuple(_check_count("hidden width", h) for h in hidden)
    _check_choice("task", task, _TASKS)
    if outputs is None:
        outputs = 10 if task == "classification" else 1
    outputs = _check_count("outputs", outputs)
    if task == "classification" and outputs < 2:
        raise ValueError(f"classification needs outputs >= 2 classes, got {outputs}")
    for what, v in (("noise", noise), ("bias_std", bias_std)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or not math.isfinite(v):
            raise ValueError(f"{what} must be a finite float >= 0, got {v!r}")

    center = _check_bool("center", center)
    ss_teacher, ss_xtr, ss_xte, ss_ntr, ss_nte, ss_ref = np.random.SeedSequence(int(seed)).spawn(6)
    rng = np.random.default_rng(ss_teacher)
    widths = (dim, *hidden, outputs)
    teacher = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        w = (rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * bias_std).astype(np.float32)
        teacher.append((w, b))
    if center:
        x_ref = np.random.default_rng(ss_ref).standard_normal((_TEACHER_REF_SAMPLES, dim))
        w, b = teacher[-1]
        teacher[-1] = (w, (b - teacher_apply(teacher, x_ref).mean(axis=0)).astype(np.float32))
    x_tr = np.random.default_rng(ss_xtr).standard_normal((n_train, dim)).astype(np.float32)
    x_te = np.random.default_rng(ss_xte).standard_normal((n_test, dim)).astype(np.float32)

    def targets(x: np.ndarray, ss: np.random.SeedSequence) -> np.ndarray:
        out = teacher_apply(teacher, x)
        if noise > 0:
            out = out + noise * np.random.default_rng(ss).standard_normal(out.shape)
        if task == "classification":
            return np.argmax(out, axis=1).astype(np.int32)
        return out.astype(np.float32)

    return Dataset(
        x_tr,
        targets(x_tr, ss_ntr),
        x_te,
        targets(x_te, ss_nte),
        name="teacher",
        task=task,
        num_classes=outputs if task == "classification" else None,
        input_shape=(dim,),
        meta={
            "source": "synthetic teacher-student (numpy)",
            "teacher": teacher,
            "teacher_layout": "list of (W (in, out), b (out,)) float32; ReLU between layers, linear output",
            "seed": int(seed),
            "dim": dim,
            "hidden": hidden,
            "outputs": outputs,
            "noise": float(noise),
            "bias_std": float(bias_std),
            "center": center,
            "init": "He normal (std sqrt(2 / fan_in))",
            "normalization": None,
            "layout": "flat",
        },
    )
