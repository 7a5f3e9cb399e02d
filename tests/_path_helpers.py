"""Hypothesis strategies and checks shared by the path / certificate / theorem tests."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from stability.core import nets
from stability.theory.paths import Path
from tests.strategies import conv_nets, dense_nets, inputs, random_net  # noqa: F401  (re-exported for the path tests)


def leaves(net: nets.Net) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(net)]


def bitwise_equal(a: nets.Net, b: nets.Net) -> bool:
    return a.arch == b.arch and all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(b)))


def max_abs_diff(a: nets.Net, b: nets.Net) -> float:
    return max(float(np.max(np.abs(u - v), initial=0.0)) for u, v in zip(leaves(a), leaves(b)))


def small_nets(dtype=jnp.float64):
    """Dense (depth 2–6, widths 1–9, biases on/off) or conv (1–3 convs, 2–5 channels … on 4–6 px inputs)."""
    return st.one_of(dense_nets(dtype=dtype), conv_nets(dtype=dtype))


@st.composite
def kept_sets(draw, net: nets.Net, definition1: bool = True):
    """One random kept set per hidden layer with ``|K_i| ≤ ⌊h_i/2⌋``."""
    out = []
    for h in nets.widths(net):
        k = draw(st.integers(0, h // 2 if definition1 else h))
        out.append(sorted(draw(st.lists(st.integers(0, h - 1), min_size=k, max_size=k, unique=True))))
    return out


def same_arch_pair(draw, net: nets.Net) -> nets.Net:
    """A second, independent net of the same architecture (random biases when present)."""
    return random_net(net.arch, draw(st.integers(0, 2**31 - 1)), leaves(net)[0].dtype)


@st.composite
def half_zero(draw, net: nets.Net, mode: str = "dead") -> nets.Net:
    """``net`` with at least ⌈h_i/2⌉ units per hidden layer out of use. ``mode="dead"``: each of them
    zero or only dead (column zeroed, row kept, as Algorithm 1 leaves them) — Lemma 2's premise;
    ``mode="zero"``: at least ⌈h_i/2⌉ zero units, some further units dead — Lemma 4's premise."""
    w = [np.array(l["w"]) for l in net.layers]
    b = [np.array(l["b"]) if "b" in l else None for l in net.layers]
    for i, h in enumerate(nets.widths(net), start=1):
        n = draw(st.integers(math.ceil(h / 2), h))
        units = draw(st.lists(st.integers(0, h - 1), min_size=n, max_size=n, unique=True))
        rest = [u for u in range(h) if u not in units]
        extra = draw(st.lists(st.sampled_from(rest), unique=True)) if (rest and mode == "zero") else []
        for u in units:
            w[i][:, u] = 0
            if mode == "zero" or not draw(st.booleans()):
                w[i - 1][u] = 0
                if b[i - 1] is not None:
                    b[i - 1][u] = 0
        for u in extra:
            w[i][:, u] = 0
    layers = tuple({"w": jnp.asarray(wi), **({} if bi is None else {"b": jnp.asarray(bi)})} for wi, bi in zip(w, b))
    return nets.Net(net.arch, layers)


_apply = jax.jit(nets.apply)


def lerp_np(a: nets.Net, b: nets.Net, t: float) -> nets.Net:
    """``nets.lerp`` in NumPy (no per-shape op compilation in property tests)."""
    def f(u, v):
        u, v = np.asarray(u), np.asarray(v)
        return v if t == 1 else (u + u.dtype.type(t) * (v - u)).astype(u.dtype)
    return jax.tree_util.tree_map(f, a, b)


def apply(net: nets.Net, x) -> np.ndarray:
    """Jitted forward pass (one compilation per architecture)."""
    return np.asarray(_apply(net, x))


def check_function_preserved(path: Path, x, data, tol: float, per_segment: int = 1) -> None:
    """Every function-preserving / copy-shift segment leaves ``f`` unchanged at random t."""
    for k, seg in enumerate(path.segments):
        if seg.claim not in ("function_preserving", "copy_shift"):
            continue
        f0 = apply(seg.start, x)
        scale = max(1.0, float(np.abs(f0).max()))
        for _ in range(per_segment):
            t = data.draw(st.floats(0.0, 1.0), label=f"t for segment {k}")
            ft = apply(lerp_np(seg.start, seg.end, t), x)
            err = float(np.abs(ft - f0).max())
            assert err <= tol * scale, f"segment {k} ({seg.label}) changes f by {err} at t={t}"


def narrow_arch(arch: nets.Arch, widths) -> nets.Arch:
    return dataclasses.replace(arch, widths=tuple(widths) + (arch.widths[-1],))


__all__ = ["leaves", "bitwise_equal", "max_abs_diff", "small_nets", "kept_sets", "same_arch_pair", "half_zero",
           "check_function_preserved", "narrow_arch", "inputs", "apply", "lerp_np", "random_net", "dense_nets",
           "conv_nets"]
