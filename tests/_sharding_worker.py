"""Run in a subprocess by tests/test_sharding.py with 4 forced host devices: every sharded call against the
one-device call on the same inputs. Prints one JSON object: per check the largest difference and facts."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from stability.core import evaluate as ev  # noqa: E402
from stability.core import mesh as M  # noqa: E402
from stability.core import nets  # noqa: E402
from stability.core.polycurve import PolyCurve  # noqa: E402
from stability.core.train import TrainConfig, fit  # noqa: E402


def diff(a, b) -> float:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    return float(max(np.nanmax(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))) if np.size(u) else 0.0
                     for u, v in zip(la, lb)))


def main() -> None:
    out: dict = {"devices": jax.device_count()}
    mesh = M.make_mesh(4)
    mesh1 = M.make_mesh(1)
    out["mesh_size"] = mesh.size
    # a bad device count: the one-line error before any work
    try:
        M.make_mesh(5)
        out["bad_devices"] = None
    except ValueError as e:
        out["bad_devices"] = str(e)
    rng = np.random.default_rng(0)
    f64 = jnp.float64
    a = nets.mlp(jax.random.PRNGKey(0), [6, 12, 10, 3], dtype=f64)
    b = nets.mlp(jax.random.PRNGKey(1), [6, 12, 10, 3], dtype=f64)
    x = jnp.asarray(rng.normal(size=(70, 6)))
    y = jnp.asarray(rng.integers(0, 3, 70))

    # evaluate: algebraic and per-point programs, dense; 70 rows (padding masked) in batches of 16
    r1 = ev.evaluate_line(a, b, 7, x, y, batch_size=16)
    r4 = ev.evaluate_line(a, b, 7, x, y, batch_size=16, mesh=mesh)
    r4o = ev.evaluate_line(a, b, 7, x, y, batch_size=16, mesh=mesh, algebra="off")
    r1o = ev.evaluate_line(a, b, 7, x, y, batch_size=16, algebra="off")
    rm1 = ev.evaluate_line(a, b, 7, x, y, batch_size=16, mesh=mesh1)
    out["evaluate"] = {"alg": diff((r1.loss, r1.acc), (r4.loss, r4.acc)),
                       "off": diff((r1o.loss, r1o.acc), (r4o.loss, r4o.acc)),
                       "one_device_mesh_bitwise": bool(np.array_equal(r1.loss, rm1.loss)),
                       "loss": r1.loss.tolist()}
    # the batches really are split: the data stack lives on 4 devices, a quarter of each batch per device
    xb, _, mb, n = M.batches(x, y, 16, mesh)
    out["evaluate"]["shard_shape"] = list(xb.addressable_shards[0].data.shape)
    out["evaluate"]["n_devices_data"] = len(xb.sharding.device_set)
    out["evaluate"]["mask_sum"] = float(jnp.sum(mb))
    # negative control: a wrong mask (padding counted) must show in the comparison
    wrong = ev._eval_chunk(ev.line_point, nets.apply, ev.get_loss("cross_entropy"), True, M.replicate((a, b), mesh),
                           M.replicate(jnp.asarray([0.5], f64), mesh), xb, M.batches(x, y, 16, mesh)[1],
                           M.shard_batches(jnp.ones_like(mb), mesh=mesh)[0])
    out["evaluate"]["wrong_mask_diff"] = abs(float(wrong[0][0]) / n - float(r1.loss[3]))
    # small conv net (host loop on CPU) through the same path
    cnet = nets.conv(jax.random.PRNGKey(2), (6, 6, 1), (3,), 3, pool="max", dtype=f64)
    cnet2 = nets.conv(jax.random.PRNGKey(3), (6, 6, 1), (3,), 3, pool="max", dtype=f64)
    xc = jnp.asarray(rng.normal(size=(24, 6, 6, 1)))
    yc = jnp.asarray(rng.integers(0, 3, 24))
    c1 = ev.evaluate_line(cnet, cnet2, 3, xc, yc, batch_size=8)
    c4 = ev.evaluate_line(cnet, cnet2, 3, xc, yc, batch_size=8, mesh=mesh)
    out["evaluate_conv"] = diff((c1.loss, c1.acc), (c4.loss, c4.acc))

    # BN recompute along a segment of two flax models
    from stability.curves import batchnorm
    from stability.curves.flax_models import MLPBN

    model = MLPBN(widths=(6, 5), classes=3)
    xbn = jnp.asarray(rng.normal(size=(64, 4)) + 2.0)
    ybn = jnp.asarray(rng.integers(0, 3, 64))
    cast = lambda v: jax.tree_util.tree_map(lambda q: q.astype(f64), v)  # noqa: E731
    v0, v1 = cast(model.init(jax.random.PRNGKey(0), xbn[:2])), cast(model.init(jax.random.PRNGKey(1), xbn[:2]))
    point = batchnorm.BNPoint(ev.line_point, model)
    bn = []
    for m in (None, mesh):
        th = batchnorm.bn_point_theta(None, model, v0, xbn, batch_size=16, mesh=m)
        theta = ((v0["params"], v1["params"]), th[1], th[2])
        bn.append(ev.evaluate(point, theta, np.linspace(0, 1, 5), xbn, ybn, apply_fn=batchnorm.BNEval(model),
                              batch_size=16, mesh=m))
        if m is not None:
            out["bn_split"] = len(th[1].sharding.device_set)
    out["bn"] = diff(bn[0].loss, bn[1].loss)

    # cushions.measure: every per-sample quantity
    from stability.theory import cushions

    cn = nets.mlp(jax.random.PRNGKey(4), [6, 10, 8, 3], dtype=f64)
    xs = jnp.asarray(rng.normal(size=(30, 6)))
    k1 = cushions.measure(cn, xs, jax.random.PRNGKey(5), batch_size=16, draws=3, progress=False)
    k4 = cushions.measure(cn, xs, jax.random.PRNGKey(5), batch_size=16, draws=3, progress=False, mesh=mesh)
    fields = [f.name for f in dataclasses.fields(k1)
              if isinstance(getattr(k1, f.name), np.ndarray) and getattr(k1, f.name).dtype.kind == "f"]
    out["cushions"] = {f: diff(getattr(k1, f), getattr(k4, f)) for f in fields}
    out["cushions_nan_same"] = all(np.array_equal(np.isnan(getattr(k1, f)), np.isnan(getattr(k4, f)))
                                   for f in fields)
    out["cushions_rel"] = max(diff(getattr(k1, f), getattr(k4, f)) /
                              max(1.0, float(np.nanmax(np.abs(getattr(k1, f)))) if getattr(k1, f).size else 1.0)
                              for f in fields)

    # fit (momentum, dropout) and train_curve: a few data-parallel steps
    x32, y32 = jnp.asarray(x, jnp.float32), y
    a32 = nets.mlp(jax.random.PRNGKey(0), [6, 12, 10, 3])
    b32 = nets.mlp(jax.random.PRNGKey(1), [6, 12, 10, 3])
    cfg = TrainConfig(steps=12, batch_size=16, optimizer="momentum", lr=0.05, dropout=0.2, log_every=6)
    n1, h1 = fit(a32, x32, y32, cfg, progress=False)
    n4, h4 = fit(a32, x32, y32, cfg, progress=False, mesh=mesh)
    out["fit"] = {"weights": diff(n1, n4), "loss": diff(h1.loss, h4.loss), "moved": diff(n1, a32),
                  "weights_rel": diff(n1, n4) / max(abs(float(v)) for v in jax.tree_util.tree_leaves(
                      jax.tree_util.tree_map(lambda q: jnp.max(jnp.abs(q)), n1)))}
    out["fit"]["out_devices"] = len(jax.tree_util.tree_leaves(n4)[0].sharding.device_set)
    try:
        fit(a32, x32, y32, TrainConfig(steps=2, batch_size=10), progress=False, mesh=mesh)
        out["fit"]["bad_batch"] = None
    except ValueError as e:
        out["fit"]["bad_batch"] = str(e)
    from stability import curves

    curve = curves.bezier(a32, b32, 1)
    ccfg = TrainConfig(steps=8, batch_size=16, optimizer="momentum", lr=0.05, log_every=4)
    c1, g1 = curves.train_curve(curve, nets.apply, x32, y32, ccfg, progress=False)
    c4, g4 = curves.train_curve(curve, nets.apply, x32, y32, ccfg, progress=False, mesh=mesh)
    out["train_curve"] = {"bends": diff(c1.bends, c4.bends), "loss": diff(g1.loss, g4.loss),
                          "moved": diff(c1.bends, curve.bends)}

    # the certified bound search
    from stability.theory.bounds import max_loss_bound

    seg = PolyCurve.segment(a, b)
    xn, yn = np.asarray(x[:30]), np.asarray(y[:30])
    kw = dict(batch_size=16, max_subintervals=16, per_round=3)
    m1 = max_loss_bound(seg, xn, yn, **kw)
    m4 = max_loss_bound(seg, xn, yn, mesh=mesh, **kw)
    out["bound"] = {"lower": [m1.lower, m4.lower], "upper": [m1.upper, m4.upper],
                    "subintervals": [m1.n_subintervals, m4.n_subintervals]}

    # stability connect's pair loop: the straight lines and their certified bounds with and without the mesh
    from stability.app.connect import ConnectConfig, connect

    c = nets.mlp(jax.random.PRNGKey(2), [6, 12, 10, 3], dtype=f64)
    ccfg = ConnectConfig(theorems=(), align="none", points=5, bound_budget=8)
    c1 = connect([a, b, c], xn, yn, ccfg, progress=False)
    c4 = connect([a, b, c], xn, yn, ccfg, progress=False, mesh=mesh)
    out["connect"] = {k: [[p.methods["line"].sampled_max, p.methods["line"].upper, p.methods["line"].lower]
                          for p in r.pairs] for k, r in (("one", c1), ("four", c4))}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    assert os.environ.get("JAX_PLATFORMS") == "cpu"
    main()
