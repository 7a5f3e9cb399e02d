"""ReLU nets as explicit pytrees, and the hidden-unit view (docs/THEORY.md §0).

A net with ``d`` weight layers computes ``x^1 = A_1 x^0 + b_1`` and
``x^i = A_i P_{i-1}(φ(x^{i-1})) + b_i`` for ``2 ≤ i ≤ d`` (φ = ReLU, ``P`` an
optional per-channel pooling after a conv layer), output ``f(x) = x^d``.

Storage convention (one for every architecture): parameter layer ``l`` (0-based,
paper index ``l+1``) holds ``w`` with **axis 0 = output units (rows)** and
**axis 1 = input units (columns)**, and optionally ``b`` of shape ``(out,)``:

=================  ===========================  ===============================
layer kind         ``w`` shape                  input
=================  ===========================  ===============================
``dense``          ``(out, in)``                ``(N, in)``
``conv``           ``(out, in, k, k)`` (OIHW)   ``(N, H, W, in)`` NHWC, same pad
``flatten``        ``(out, C, H, W)``           ``(N, H, W, C)`` feature map
``gap``            ``(out, C)``                 global mean of ``(N, H, W, C)``
=================  ===========================  ===============================

so the row of hidden unit ``u`` of hidden layer ``i`` (paper index, 1..d-1) is
``w[u]`` and ``b[u]`` of ``layers[i-1]``, and its column is ``w[:, u]`` of
``layers[i]`` — for a conv net a unit is a channel, and for the first dense
layer after ``flatten`` the column is every input position of that channel.
:func:`stability.core.units.unit_spec` states this declaratively (in the spirit of a
permutation spec) and every hidden-unit operation goes through :mod:`stability.core.units`,
so path code never branches on dense vs conv.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import checks as _checks
from stability.core import mesh as _mesh

Array = jax.Array
Pool = Literal["max", "avg"] | None
LayerKind = Literal["dense", "conv", "flatten", "gap"]

__all__ = [
    "Arch", "Net", "mlp", "conv", "apply", "forward", "layer_forward", "layer_apply", "pool2", "init_like",
    "keras_init", "widths", "depth", "check_same_arch", "stack", "stack_leaves", "unstack", "point_spec",
    "sample_spec", "lerp", "to_flax", "from_flax", "param_count",
]


# --------------------------------------------------------------------------- architecture


@dataclasses.dataclass(frozen=True)
class Arch:
    """Static architecture metadata (hashable; the pytree's aux data).

    ``widths`` are the output widths of all ``d`` layers (hidden widths, then
    the number of outputs). The first ``n_conv`` layers are convs; the next
    layer is ``flatten`` or ``gap`` when ``n_conv > 0``; the rest are dense.
    """

    in_shape: tuple[int, ...]
    widths: tuple[int, ...]
    n_conv: int = 0
    kernel: int = 3
    pool: tuple[Pool, ...] = ()
    head: Literal["flatten", "gap"] = "flatten"
    bias: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", _checks.int_tuple("widths", self.widths, 1))
        object.__setattr__(self, "in_shape", _checks.int_tuple("in_shape", self.in_shape, 1))
        object.__setattr__(self, "n_conv", _checks.nonneg_int("n_conv", self.n_conv))
        object.__setattr__(self, "kernel", _checks.positive_int("kernel", self.kernel))
        if not 0 <= self.n_conv < len(self.widths):
            raise ValueError("n_conv must be >= 0 and leave at least one dense (output) layer after the convs")
        if self.n_conv > 0:
            if len(self.in_shape) != 3:
                raise ValueError(f"conv nets take NHWC inputs: in_shape must be (H, W, C), got {self.in_shape}")
            if self.pool == ():
                object.__setattr__(self, "pool", (None,) * self.n_conv)  # default: no pooling
            if len(self.pool) != self.n_conv:
                raise ValueError(f"pool must have one entry per conv layer ({self.n_conv}), got {self.pool}")
            if any(p not in (None, "max", "avg") for p in self.pool):
                raise ValueError(f"pool entries must be None, 'max' or 'avg', got {self.pool}")
            if self.head not in ("flatten", "gap"):
                raise ValueError(f"head must be 'flatten' or 'gap', got {self.head!r}")
            if self.kernel < 1 or self.kernel % 2 == 0:
                raise ValueError(f"kernel must be a positive odd int (same padding), got {self.kernel}")
        elif len(self.in_shape) != 1:
            raise ValueError(f"dense nets take flat inputs: in_shape must be (D,), got {self.in_shape}")

    @property
    def depth(self) -> int:
        """Number of weight layers ``d``."""
        return len(self.widths)

    @property
    def kinds(self) -> tuple[LayerKind, ...]:
        out: list[LayerKind] = []
        for l in range(self.depth):
            if l < self.n_conv:
                out.append("conv")
            elif l == self.n_conv and self.n_conv > 0:
                out.append(self.head)
            else:
                out.append("dense")
        return tuple(out)

    def feature_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the feature map entering the first dense layer of a conv net."""
        h, w, _ = self.in_shape
        for p in self.pool:
            if p is not None:
                h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"pooling shrinks the {self.in_shape[:2]} input to nothing")
        return h, w, self.widths[self.n_conv - 1]

    def weight_shapes(self) -> tuple[tuple[int, ...], ...]:
        shapes = []
        fan_in = self.in_shape[-1]
        for l, (kind, out) in enumerate(zip(self.kinds, self.widths)):
            if kind == "conv":
                shapes.append((out, fan_in, self.kernel, self.kernel))
            elif kind == "flatten":
                h, w, c = self.feature_shape()
                shapes.append((out, c, h, w))
            else:
                shapes.append((out, fan_in))
            fan_in = out
        return tuple(shapes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_shape": list(self.in_shape), "widths": list(self.widths), "n_conv": self.n_conv,
            "kernel": self.kernel, "pool": list(self.pool), "head": self.head, "bias": self.bias,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Arch":
        return cls(
            in_shape=tuple(d["in_shape"]), widths=tuple(d["widths"]), n_conv=d["n_conv"], kernel=d["kernel"],
            pool=tuple(d["pool"]), head=d["head"], bias=bool(d["bias"]),
        )


@dataclasses.dataclass(frozen=True)
class Net:
    """A ReLU net: static :class:`Arch` plus a tuple of per-layer dicts ``{"w", ["b"]}``.

    Read layers through :meth:`A` / :meth:`bias` (paper numbering) and edit them with :meth:`with_layer`; the
    hidden-unit view (:mod:`stability.core.units`) is the only other place that knows the layout. Leaves may
    carry leading batch axes (a stack of nets, see :func:`stack`) and may be NumPy (host) or JAX arrays.
    """

    arch: Arch
    layers: tuple[dict[str, Array], ...]

    @property
    def depth(self) -> int:
        return self.arch.depth

    def A(self, i: int) -> Array:
        """Weight of layer ``i`` in the paper's 1-based numbering (``A_i``)."""
        return self.layers[i - 1]["w"]

    def bias(self, i: int) -> Array | None:
        """Bias ``b_i`` of layer ``i`` (1-based), or ``None`` for a bias-free net."""
        return self.layers[i - 1].get("b")

    def with_layer(self, i: int, *, A: Array | None = None, b: Array | None = None) -> "Net":
        """A copy with ``A_i`` and/or ``b_i`` (1-based) replaced."""
        new = dict(self.layers[i - 1])
        if A is not None:
            new["w"] = A
        if b is not None:
            if "b" not in new:
                raise ValueError(f"layer {i} has no bias to replace (the net is bias-free)")
            new["b"] = b
        layers = list(self.layers)
        layers[i - 1] = new
        return Net(self.arch, tuple(layers))

    @classmethod
    def from_arrays(cls, arch: Arch, weights: Sequence[Array], biases: Sequence[Array | None] | None = None
                    ) -> "Net":
        """A net from per-layer weights ``A_1..A_d`` and biases (``None`` entries, or no list, when bias-free)."""
        biases = [None] * len(weights) if biases is None else list(biases)
        if len(weights) != arch.depth or len(biases) != arch.depth:
            raise ValueError(f"need {arch.depth} weights and biases, got {len(weights)} and {len(biases)}")
        layers = []
        for w, b in zip(weights, biases):
            layers.append({"w": w} if b is None else {"w": w, "b": b})
        return cls(arch, tuple(layers))

    def replace_layer(self, l: int, **arrays: Array) -> "Net":
        """A copy with entries of 0-based layer ``l`` replaced (``w=…``, ``b=…``)."""
        return self.with_layer(l + 1, A=arrays.get("w"), b=arrays.get("b"))

    def astype(self, dtype) -> "Net":
        return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), self)


jax.tree_util.register_dataclass(Net, data_fields=["layers"], meta_fields=["arch"])


@functools.partial(jax.jit, static_argnums=(1, 2))
def _he_init(key: Array, shape: tuple[int, ...], dtype) -> Array:
    """He-normal weights of one layer: one compiled program per layer shape and dtype, shared by every
    architecture with a layer of that shape."""
    fan_in = int(np.prod(shape[1:]))
    return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / fan_in)


@functools.partial(jax.jit, static_argnums=1)
def _layer_keys(key: Array, depth: int) -> tuple[Array, ...]:
    return tuple(jax.random.split(key, depth))


def init(key: Array, arch: Arch, dtype=jnp.float32) -> Net:
    """He-normal weights, zero biases. One small compiled program per layer shape and dtype (compiling one
    program per architecture took several times longer; the weights are the same bits)."""
    dtype = jnp.dtype(dtype)
    layers = []
    for k, shape in zip(_layer_keys(key, arch.depth), arch.weight_shapes()):
        layer = {"w": _he_init(k, tuple(shape), dtype)}
        if arch.bias:
            layer["b"] = jax.device_put(np.zeros((shape[0],), dtype))  # compiles nothing
        layers.append(layer)
    return Net(arch, tuple(layers))


def mlp(key: Array, sizes: Sequence[int], bias: bool = True, dtype=jnp.float32) -> Net:
    """Dense ReLU net; ``sizes = (input_dim, h_1, …, h_{d-1}, outputs)``, every size an integer ≥ 1
    (1.5 is refused, not truncated)."""
    sizes = _checks.int_tuple("mlp sizes", sizes, 1, min_len=2)
    return init(key, Arch(in_shape=(sizes[0],), widths=sizes[1:], bias=bias), dtype)


def conv(
    key: Array,
    in_shape: Sequence[int],
    channels: Sequence[int],
    classes: int,
    kernel: int = 3,
    pool: Pool | Sequence[Pool] = None,
    bias: bool = True,
    head: Literal["flatten", "gap"] = "flatten",
    dense: Sequence[int] = (),
    dtype=jnp.float32,
) -> Net:
    """Channel-wise ReLU conv net: same-padded ``kernel×kernel`` convs with ``channels``,
    optional 2×2 pooling after each conv (one value or one per conv), ``flatten`` or
    global-average-pool ``gap``, hidden ``dense`` layers, then a dense output layer.

    The paper's MNIST net (Appendix D.1) is ``conv(key, (28, 28, 1), (32, 32, 32), 10)``.
    """
    if isinstance(channels, Sequence) and len(channels) == 0:
        raise ValueError("conv channels must name at least one conv layer (use mlp for dense nets), got ()")
    channels = _checks.int_tuple("conv channels", channels, 1)
    dense = _checks.int_tuple("conv dense", dense, 1, min_len=0)
    in_shape = _checks.int_tuple("conv in_shape", in_shape, 1)
    classes = _checks.positive_int("conv classes", classes)
    kernel = _checks.positive_int("conv kernel", kernel)
    pools = tuple(pool for _ in channels) if pool is None or isinstance(pool, str) else tuple(pool)
    arch = Arch(
        in_shape=tuple(int(s) for s in in_shape), widths=channels + tuple(int(w) for w in dense) + (int(classes),),
        n_conv=len(channels), kernel=int(kernel), pool=pools, head=head, bias=bias,
    )
    return init(key, arch, dtype)


def keras_init(seed: int, arch: Arch, dtype=np.float32) -> Net:
    """Keras' default initialisation, which the paper's (Keras) code used: Glorot-uniform kernels
    (``limit = √(6/(fan_in + fan_out))``, receptive field counted for convs) and zero biases.

    Drawn with a NumPy generator seeded with ``seed`` (deterministic, and no per-shape compilation of
    eager JAX random ops)."""
    rng = np.random.default_rng(seed)
    layers = []
    for kind, shape in zip(arch.kinds, arch.weight_shapes()):
        if kind == "conv":
            rf = int(np.prod(shape[2:]))
            fan_in, fan_out = shape[1] * rf, shape[0] * rf
        elif kind == "flatten":
            fan_in, fan_out = int(np.prod(shape[1:])), shape[0]
        else:
            fan_in, fan_out = shape[1], shape[0]
        lim = math.sqrt(6.0 / (fan_in + fan_out))
        layer = {"w": jnp.asarray(rng.uniform(-lim, lim, size=shape).astype(dtype))}
        if arch.bias:
            layer["b"] = jnp.zeros((shape[0],), dtype)
        layers.append(layer)
    return Net(arch, tuple(layers))


def init_like(key: Array, net: Net) -> Net:
    """A fresh initialisation of ``net``'s architecture (same dtype)."""
    return init(key, net.arch, net.layers[0]["w"].dtype)


# --------------------------------------------------------------------------- forward


def pool2(h: Array, kind: str) -> Array:
    """2×2, stride-2 per-channel ``"max"`` or ``"avg"`` pooling of an NHWC map (odd edges dropped)."""
    n, hh, ww, c = h.shape
    h = h[:, : hh - hh % 2, : ww - ww % 2, :].reshape(n, hh // 2, 2, ww // 2, 2, c)
    return h.max(axis=(2, 4)) if kind == "max" else h.mean(axis=(2, 4))


def layer_apply(arch: Arch, l: int, w: Array, b: Array | None, h: Array) -> Array:
    """Pre-activation of parameter layer ``l`` (0-based) with weight ``w`` and bias ``b`` (``None``: the
    linear part only) from its input ``h`` (activations after pooling)."""
    kind = arch.kinds[l]
    if kind == "conv":
        out = jax.lax.conv_general_dilated(
            h, w, window_strides=(1, 1), padding="SAME", dimension_numbers=("NHWC", "OIHW", "NHWC")
        )
    elif kind == "flatten":
        out = jnp.einsum("nhwc,ochw->no", h, w)
    elif kind == "gap":
        out = h.mean(axis=(1, 2)) @ w.T
    else:
        out = h @ w.T
    if b is not None:
        out = out + b
    return out


def layer_forward(arch: Arch, l: int, layer: dict[str, Array], h: Array) -> Array:
    """:func:`layer_apply` with the layer given as its parameter dict."""
    return layer_apply(arch, l, layer["w"], layer.get("b"), h)


def _check_input(arch: Arch, x: Array) -> None:
    if tuple(x.shape[1:]) != arch.in_shape:
        raise ValueError(
            f"input of shape {tuple(x.shape)} does not match the net's per-sample input shape {arch.in_shape} "
            f"(expected (N, {', '.join(map(str, arch.in_shape))}))"
        )


def forward(net: Net, x: Array, unit_scales: Sequence[Array | None] | None = None) -> list[Array]:
    """All pre-activations ``[x^1, …, x^d]`` for a batch ``x`` of shape ``(N, *in_shape)``.

    ``unit_scales[i-1]`` (optional, broadcastable to ``φ(x^i)``, e.g. ``(N, h_i)`` or
    ``(N, 1, 1, C)``) multiplies the activations of hidden layer ``i`` — the same as
    scaling that layer's columns per sample; used for (channel-wise) dropout.
    """
    arch = net.arch
    _check_input(arch, x)
    if unit_scales is not None and len(unit_scales) != arch.depth - 1:
        raise ValueError(f"unit_scales needs one entry per hidden layer ({arch.depth - 1}), got {len(unit_scales)}")
    pre: list[Array] = []
    h = x
    for l, layer in enumerate(net.layers):
        if l > 0:
            h = jax.nn.relu(pre[-1])
            if unit_scales is not None and unit_scales[l - 1] is not None:
                h = h * unit_scales[l - 1]
            if l - 1 < arch.n_conv and arch.pool[l - 1] is not None:
                h = pool2(h, arch.pool[l - 1])
        pre.append(layer_forward(arch, l, layer, h))
    return pre


def apply(net: Net, x: Array) -> Array:
    """Logits ``f(x) = x^d``."""
    return forward(net, x)[-1]


def depth(net: Net) -> int:
    return net.arch.depth


def widths(net: Net) -> tuple[int, ...]:
    """Hidden widths ``(h_1, …, h_{d-1})``."""
    return net.arch.widths[:-1]


# --------------------------------------------------------------------------- pytree utilities


def check_same_arch(a: Net, b: Net, what: str = "nets") -> None:
    """Raise a clear error if two nets do not share an architecture and dtype."""
    if a.arch != b.arch:
        raise ValueError(f"{what} have different architectures:\n  {a.arch}\n  {b.arch}")
    da = [x.dtype for x in jax.tree_util.tree_leaves(a)]
    db = [x.dtype for x in jax.tree_util.tree_leaves(b)]
    if da != db:
        raise ValueError(f"{what} have different dtypes: {da[0]} vs {db[0]}")


def stack(nets: Sequence[Net]) -> Net:
    """Stack nets of one architecture along a new leading axis (for vmapped evaluation)."""
    for n in nets[1:]:
        check_same_arch(nets[0], n)
    return jax.tree_util.tree_map(stack_leaves, *nets)


def stack_leaves(*xs: Any) -> Array:
    """``jnp.stack(xs)``; stacked by NumPy where :func:`stability.core.mesh.array_module` says so (the same values,
    no eager program compiled per shape)."""
    xp = _mesh.array_module(*xs)
    return _mesh.to_device(xp.stack([xp.asarray(x) for x in xs]))


def point_spec(stacked: Any) -> Any:
    """Shapes and dtypes of one point of a stack (``jax.ShapeDtypeStruct`` leaves; for ``jax.eval_shape`` and size
    choices, without slicing anything)."""
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(tuple(a.shape[1:]), a.dtype), stacked)


def sample_spec(x: Any, n: int = 1) -> jax.ShapeDtypeStruct:
    """Shape and dtype of ``x[:n]`` (a batch of ``n`` samples) without slicing ``x``."""
    return jax.ShapeDtypeStruct((n,) + tuple(x.shape[1:]), x.dtype)


def unstack(stacked: Net) -> list[Net]:
    n = jax.tree_util.tree_leaves(stacked)[0].shape[0]
    return [jax.tree_util.tree_map(lambda a: a[k], stacked) for k in range(n)]


def lerp(a: Any, b: Any, t: Array) -> Any:
    """``(1−t)·a + t·b`` on any pair of matching pytrees (exact at t = 0 and t = 1)."""
    return jax.tree_util.tree_map(lambda x, y: jnp.where(t == 1, y, x + t * (y - x)).astype(x.dtype), a, b)


def param_count(net: Net) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(net)))


# --------------------------------------------------------------------------- flax (linen) converters


def _flax_module(arch: Arch):
    import flax.linen as nn

    class FlaxReLUNet(nn.Module):
        """The flax.linen model computing the same function as a :class:`Net` of ``arch``."""

        @nn.compact
        def __call__(self, x):
            for l, (kind, out) in enumerate(zip(arch.kinds, arch.widths)):
                if l > 0:
                    x = nn.relu(x)
                    if l - 1 < arch.n_conv and arch.pool[l - 1] is not None:
                        pool = nn.max_pool if arch.pool[l - 1] == "max" else nn.avg_pool
                        x = pool(x, (2, 2), strides=(2, 2))
                if kind == "conv":
                    x = nn.Conv(out, (arch.kernel, arch.kernel), padding="SAME", use_bias=arch.bias, name=f"layer{l}")(x)
                else:
                    if kind == "flatten":
                        x = x.reshape(x.shape[0], -1)
                    elif kind == "gap":
                        x = x.mean(axis=(1, 2))
                    x = nn.Dense(out, use_bias=arch.bias, name=f"layer{l}")(x)
            return x

    return FlaxReLUNet()


def to_flax(net: Net) -> tuple[Any, dict]:
    """``(module, variables)`` for the equivalent ``flax.linen`` model: ``module.apply(variables, x)``
    equals :func:`apply` ``(net, x)``. Conv kernels become HWIO, dense kernels ``(in, out)``, and the
    ``flatten`` layer's ``(out, C, H, W)`` becomes the ``(H·W·C, out)`` kernel of an NHWC reshape."""
    arch = net.arch
    params = {}
    for l, (kind, layer) in enumerate(zip(arch.kinds, net.layers)):
        w = layer["w"]
        if kind == "conv":
            k = jnp.transpose(w, (2, 3, 1, 0))
        elif kind == "flatten":
            k = jnp.transpose(w, (2, 3, 1, 0)).reshape(-1, w.shape[0])
        else:
            k = w.T
        p = {"kernel": k}
        if "b" in layer:
            p["bias"] = layer["b"]
        params[f"layer{l}"] = p
    return _flax_module(arch), {"params": params}


def from_flax(arch: Arch, variables: dict) -> Net:
    """Inverse of :func:`to_flax` for the module built from ``arch``."""
    params = variables.get("params", variables)
    layers = []
    shapes = arch.weight_shapes()
    for l, kind in enumerate(arch.kinds):
        name = f"layer{l}"
        if name not in params:
            raise KeyError(f"flax params lack {name!r}; expected keys layer0..layer{arch.depth - 1}")
        k = jnp.asarray(params[name]["kernel"])
        if kind == "conv":
            w = jnp.transpose(k, (3, 2, 0, 1))
        elif kind == "flatten":
            out, c, h, wd = shapes[l]
            w = jnp.transpose(k.reshape(h, wd, c, out), (3, 2, 0, 1))
        else:
            w = k.T
        if tuple(w.shape) != shapes[l]:
            raise ValueError(f"flax kernel {name} gives weight shape {tuple(w.shape)}, arch expects {shapes[l]}")
        layer = {"w": w}
        if arch.bias:
            layer["b"] = jnp.asarray(params[name]["bias"])
        layers.append(layer)
    return Net(arch, tuple(layers))
