"""Bad inputs, through the command line and the Python API: each is refused before any work starts with one
line that names the argument, and leaves nothing behind.

The command-line cases run ``stability.app.cli.main`` in-process with every expensive step (training, curve
training, the cushion solver, ensembles, the loss plane, reproductions, the demo's training) replaced by a
tripwire: a case that reached one would exit 1 ("failed: … work started"), not 2. ``CLI_CASES`` and
``API_CASES`` are plain data, so the table of inputs and messages can be printed from them
(``python tests/test_bad_inputs.py``)."""

from __future__ import annotations

import io
import math
import time
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stability.app import cli
from stability.core import checkpoint, nets

# --------------------------------------------------------------------------- files the cases use


def make_files(d: Path) -> dict[str, str]:
    """Checkpoints (good and broken), a plain file, a foreign directory — everything the CLI cases name."""
    d.mkdir(parents=True, exist_ok=True)
    good = [nets.mlp(jax.random.PRNGKey(s), (64, 16, 10)) for s in range(3)]
    for k, net in enumerate(good):
        checkpoint.save(d / f"good{k}.npz", net, {"data": "digits"})
    checkpoint.save(d / "nodata.npz", good[0], {})
    checkpoint.save(d / "wide.npz", nets.mlp(jax.random.PRNGKey(5), (64, 9, 10)), {"data": "digits"})
    checkpoint.save(d / "nohidden.npz", nets.mlp(jax.random.PRNGKey(6), (64, 10)), {"data": "digits"})
    with np.load(d / "good0.npz") as z:
        arrays = {k: z[k] for k in z.files}
    w = arrays["layer0/w"].copy()
    w[0, 0], w[1, 1] = np.nan, np.inf
    np.savez(d / "nan.npz", **{**arrays, "layer0/w": w})
    np.savez(d / "listheader.npz", **{**arrays, "__stability__": np.frombuffer(b"[1, 2, 3]", np.uint8)})
    np.savez(d / "foreign.npz", a=np.arange(3))
    (d / "random.npz").write_bytes(np.random.default_rng(0).bytes(2048))
    (d / "pickled.npz").write_bytes(b"\x80\x04\x95" + bytes(64))
    raw = (d / "good0.npz").read_bytes()
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    (d / "afile.txt").write_text("not a directory\n")
    (d / "someone_elses").mkdir(exist_ok=True)
    (d / "someone_elses" / "notes.txt").write_text("keep me\n")
    (d / "adir.npz").mkdir(exist_ok=True)
    names = ("good0.npz", "good1.npz", "good2.npz", "nodata.npz", "wide.npz", "nohidden.npz", "nan.npz",
             "listheader.npz", "foreign.npz", "random.npz", "pickled.npz", "truncated.npz", "afile.txt",
             "someone_elses", "adir.npz")
    return {k.split(".")[0]: str(d / k) for k in names}


# --------------------------------------------------------------------------- command-line cases

# (command line with {placeholders}, the argument the message must name). {out} is a fresh path in the case's
# own directory; {A}, {B}, … name files of make_files.
CLI_CASES: list[tuple[str, str]] = [
    ("train --out {out}/net.json", "--out"),
    ("train --out {adir}", "--out"),
    ("train --out {afile}/net.npz", "--out"),
    ("train --out {someone_elses}", "--out"),
    ("train --out {foreign}", "--out"),
    ("train --n-train 0 --out {out}/n.npz", "--n-train"),
    ("train --n-train 5000 --out {out}/n.npz", "--n-train"),
    ("train --weight-decay -1 --out {out}/n.npz", "--weight-decay"),
    ("train --weight-decay nan --out {out}/n.npz", "--weight-decay"),
    ("train --lr nan --out {out}/n.npz", "--lr"),
    ("train --lr 0 --out {out}/n.npz", "--lr"),
    ("train --lr -0.1 --out {out}/n.npz", "--lr"),
    ("train --lr inf --out {out}/n.npz", "--lr"),
    ("train --steps 0 --out {out}/n.npz", "--steps"),
    ("train --steps 1.5 --out {out}/n.npz", "--steps"),
    ("train --batch-size 0 --out {out}/n.npz", "--batch-size"),
    ("train --batch-size 64 --n-train 10 --out {out}/n.npz", "--batch-size"),
    ("train --widths 1.5 --out {out}/n.npz", "--widths"),
    ("train --widths 64,0 --out {out}/n.npz", "--widths"),
    ("train --widths a,b --out {out}/n.npz", "--widths"),
    ("train --dropout 1 --out {out}/n.npz", "--dropout"),
    ("train --dropout -0.1 --out {out}/n.npz", "--dropout"),
    ("train --data imagenet --out {out}/n.npz", "--data"),
    ("train --arch conv --data teacher --out {out}/n.npz", "--arch"),
    ("train --arch conv --widths 4,4,4,4 --pool max --out {out}/n.npz", "--pool"),
    ("train --seed -1 --out {out}/n.npz", "--seed"),
    ("train --log-every 0 --out {out}/n.npz", "--log-every"),
    ("train --optimizer rmsprop --out {out}/n.npz", "--optimizer"),
    ("train --steps 10", "--out"),
    ("curve {out}/missing.npz {good1} --out {out}/c", "A"),
    ("curve {nan} {good1} --out {out}/c", "NaN"),
    ("curve {listheader} {good1} --out {out}/c", "header"),
    ("curve {random} {good1} --out {out}/c", "not a .npz archive"),
    ("curve {truncated} {good1} --out {out}/c", "A:"),
    ("curve {good0} {pickled} --out {out}/c", "B:"),
    ("curve {good0} {adir} --out {out}/c", "B:"),
    ("curve {good0} {wide} --out {out}/c", "A, B"),
    ("curve {good0} {good1} --bends 0 --out {out}/c", "--bends"),
    ("curve {good0} {good1} --kind spline --out {out}/c", "--kind"),
    ("curve {good0} {good1} --points 1 --out {out}/c", "--points"),
    ("curve {good0} {good1} --plane-resolution 1 --out {out}/c", "--plane-resolution"),
    ("curve {good0} {good1} --lr nan --out {out}/c", "--lr"),
    ("curve {good0} {good1} --steps -5 --out {out}/c", "--steps"),
    ("curve {good0} {good1} --out {afile}", "--out"),
    ("curve {good0} {good1} --out {afile}/sub", "--out"),
    ("curve {good0} {good1} --out {someone_elses}", "--out"),
    ("curve {good0} {good1} --data teacher --out {out}/c", "--data"),
    ("curve {nodata} {good1} --out {out}/c", "--data"),
    ("plane {good0} {good1} {good2} --resolution 1 --out {out}/p", "--resolution"),
    ("plane {good0} {good0} {good2} --out {out}/p", "A, B, C"),
    ("plane {good0} {wide} {good2} --out {out}/p", "A, B"),
    ("plane {good0} {good1} {nan} --out {out}/p", "C:"),
    ("fge --cycle 3 --out {out}/f", "--cycle"),
    ("fge --cycle 40 --budget-steps 100 --out {out}/f", "--cycle"),
    ("fge --budgets 0 --out {out}/f", "--budgets"),
    ("fge --alpha1 0.05 --alpha2 0.1 --out {out}/f", "--alpha2"),
    ("fge --alpha1 0 --out {out}/f", "--alpha1"),
    ("fge --n-train 0 --out {out}/f", "--n-train"),
    ("fge --widths 1.5 --out {out}/f", "--widths"),
    ("cushions {good0} --p 0 --out {out}/c", "--p"),
    ("cushions {good0} --p 1 --out {out}/c", "--p"),
    ("cushions {good0} --draws 0 --out {out}/c", "--draws"),
    ("cushions {good0} --ts 0,2 --out {out}/c", "--ts"),
    ("cushions {good0} --tol nan --out {out}/c", "--tol"),
    ("cushions {good0} --max-iter 0 --out {out}/c", "--max-iter"),
    ("cushions {good0} --n 0 --out {out}/c", "--n"),
    ("cushions {good0} --lemma3-draws -1 --out {out}/c", "--lemma3-draws"),
    ("cushions {adir} --out {out}/c", "CHECKPOINT"),
    ("cushions {nan} --out {out}/c", "CHECKPOINT"),
    ("cushions {nohidden} --out {out}/c", "CHECKPOINT"),
    ("cushions {nodata} --out {out}/c", "--data"),
    ("cushions {good0} --data teacher --out {out}/c", "--data"),
    ("reproduce", "name a reproduction"),
    ("reproduce nope --out {out}/r", "NAME"),
    ("reproduce garipov-fge --quick --set widths=1.5 --out {out}/r", "widths"),
    ("reproduce garipov-fge --quick --set widths=(64,0) --out {out}/r", "widths"),
    ("reproduce garipov-fge --quick --set nope=1 --out {out}/r", "--set"),
    ("reproduce garipov-fge --quick --set lr=-1 --out {out}/r", "lr"),
    ("reproduce garipov-fge --quick --set epochs=0 --out {out}/r", "epochs"),
    ("reproduce garipov-fge --quick --set lr=nan --out {out}/r", "lr"),
    ("reproduce garipov-fge --quick --set steps --out {out}/r", "--set"),
    ("reproduce garipov-fge --quick --set n_train=0 --out {out}/r", "n_train"),
    ("reproduce kuditipudi-thm4 --quick --set hs=(1,) --out {out}/r", "hs"),
    ("reproduce kuditipudi-fig2 --quick --set trials=2.5 --out {out}/r", "trials"),
    ("reproduce all --quick --set n_train=10 --out {out}/r", "--set"),
    ("reproduce garipov-fge --quick --out {someone_elses}", "--out"),
    ("demo --only nope --out {out}/d", "--only"),
    ("demo --seed -1 --out {out}/d", "--seed"),
    ("demo --out {afile}", "--out"),
    ("demo --out {someone_elses}", "--out"),
    ("frobnicate", "COMMAND"),
    ("", "COMMAND"),
]


def _tripwire(*_: Any, **__: Any) -> None:
    raise AssertionError("work started before the bad input was refused")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return make_files(tmp_path_factory.mktemp("files"))


def _import_every_module() -> None:
    """Import the whole package before a tripwire is set: a module imported for the first time while one is set
    would bind the tripwire under its own name for the rest of the session (``from … import fit``)."""
    import importlib
    import pkgutil

    import stability

    for info in pkgutil.walk_packages(stability.__path__, "stability."):
        importlib.import_module(info.name)


@pytest.fixture()
def no_work(monkeypatch):
    """Every expensive step of every command raises: a case that reaches one fails (exit 1), not refuses (2)."""
    _import_every_module()
    import stability.app.demo as demo
    import stability.app.reproduce as reproduce
    import stability.core.train as train
    import stability.curves.curve as curve
    import stability.curves.ensembles as ensembles
    import stability.curves.planes as planes
    import stability.theory.cushions as cushions

    for mod, name in ((train, "fit"), (curve, "train_curve"), (ensembles, "compare_budgets"),
                      (planes, "evaluate_plane"), (cushions, "measure"), (reproduce, "run"), (demo, "_train_pair")):
        monkeypatch.setattr(mod, name, _tripwire)


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(d.rglob("*"))}


def run_cli(line: str, files: dict[str, str], out: Path) -> tuple[int, str, float]:
    argv = line.format(out=out, **files).split()
    err = io.StringIO()
    t0 = time.perf_counter()
    with redirect_stderr(err):
        rc = cli.main(argv)
    return rc, err.getvalue(), time.perf_counter() - t0


@pytest.mark.parametrize("line,arg", CLI_CASES, ids=[c[0] or "(nothing)" for c in CLI_CASES])
def test_cli_refuses_before_work(line, arg, files, no_work, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # reproduce's default output directory would land here
    out = tmp_path / "out"
    out.mkdir()
    before, files_before = _snapshot(tmp_path), _snapshot(Path(files["good0"]).parent)
    rc, err, secs = run_cli(line, files, out)
    assert rc == 2, f"{line!r}: exit {rc}, {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("stability") and ": error: " in lines[0], lines[0]
    assert arg in lines[0], f"{line!r}: the message does not name {arg!r}: {lines[0]}"
    assert "allow_pickle" not in err and "diverged" not in err
    assert _snapshot(tmp_path) == before, f"{line!r} left files behind"
    assert _snapshot(Path(files["good0"]).parent) == files_before, f"{line!r} changed an input file"
    assert secs < 10.0, f"{line!r} took {secs:.1f} s to refuse"


def test_debug_shows_the_traceback(files, no_work, tmp_path, capsys):
    assert cli.main(["--debug", "train", "--lr", "nan", "--out", str(tmp_path / "n.npz")]) == 2  # a parse error
    rc = cli.main(["curve", files["nan"], files["good1"], "--out", str(tmp_path / "c"), "--debug"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("stability curve: error:")


# --------------------------------------------------------------------------- API cases

_KEY = jax.random.PRNGKey(0)


def _net() -> nets.Net:
    return nets.mlp(_KEY, (64, 16, 10))


def _data(n: int = 40):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(n, 64)), jnp.float32)
    y = jnp.asarray(np.arange(n) % 10, jnp.int32)
    return x, y


def _fit(y=None, y_test=None, **cfg):
    from stability.core.train import TrainConfig, fit

    x, y0 = _data()
    return fit(_net(), x, y0 if y is None else y, TrainConfig(steps=5, **cfg), x_test=None if y_test is None else x,
               y_test=y_test, progress=False)


def _labels(kind: str):
    _, y = _data()
    y = np.asarray(y)
    return {"minus1": np.where(np.arange(40) == 3, -1, y).astype(np.int32),
            "ten": np.where(np.arange(40) == 3, 10, y).astype(np.int32),
            "float": y.astype(np.float32), "onehot": np.eye(10, dtype=np.float32)[y]}[kind]


def _greedy(**kw):
    from stability.theory.dropout import greedy_search

    x, y = _data()
    return greedy_search(_net(), x, y, **kw)


def _best_of_n(**kw):
    from stability.theory.dropout import best_of_n

    x, y = _data()
    return best_of_n(_net(), x, y, _KEY, **kw)


def _evaluate_line(y):
    from stability.core.evaluate import evaluate_line

    x, _ = _data()
    return evaluate_line(_net(), nets.mlp(jax.random.PRNGKey(1), (64, 16, 10)), 3, x, y)


def _measure(**kw):
    from stability.theory import cushions

    x, _ = _data(8)
    return cushions.measure(_net(), x, _KEY, **kw)


def _plane(resolution):
    from stability.curves import planes

    x, y = _data()
    p = planes.plane(_net(), nets.mlp(jax.random.PRNGKey(1), (64, 16, 10)), nets.mlp(jax.random.PRNGKey(2), (64, 16, 10)))
    return planes.evaluate_plane(p, x, y, resolution=resolution)


def _train_curve(y):
    from stability.core.train import TrainConfig
    from stability.curves import curve

    x, _ = _data()
    c = curve.bezier(_net(), nets.mlp(jax.random.PRNGKey(1), (64, 16, 10)), 1)
    return curve.train_curve(c, nets.apply, x, y, TrainConfig(steps=5), progress=False)


def _compare_budgets(**kw):
    from stability.core.train import TrainConfig
    from stability.curves import ensembles
    from stability import data

    args = {"budgets": (1,), "fge_cycle": 4, "fge_alphas": (0.05, 0.001), **kw}
    return ensembles.compare_budgets(lambda s: _net(), data.load("digits"), TrainConfig(steps=40), **args)


def _load(name: str):
    return lambda files: checkpoint.load(files[name])


def _save_nan():
    net = _net()
    return checkpoint.save("/nonexistent-dir-never-made/x.npz", net.with_layer(1, A=net.A(1).at[0, 0].set(jnp.nan)))


# (what is called, the exception class, text the message must hold — the argument's name)
API_CASES: list[tuple[str, Callable[..., Any], type, str]] = [
    ("nets.mlp(key, (64, 1.5, 10))", lambda: nets.mlp(_KEY, (64, 1.5, 10)), ValueError, "mlp sizes"),
    ("nets.mlp(key, (64, 0, 10))", lambda: nets.mlp(_KEY, (64, 0, 10)), ValueError, "mlp sizes"),
    ("nets.mlp(key, (64,))", lambda: nets.mlp(_KEY, (64,)), ValueError, "mlp sizes"),
    ("nets.conv(key, (8, 8, 1), (), 10)", lambda: nets.conv(_KEY, (8, 8, 1), (), 10), ValueError, "conv channels"),
    ("nets.conv(key, (8, 8, 1), (4.5,), 10)", lambda: nets.conv(_KEY, (8, 8, 1), (4.5,), 10), ValueError,
     "conv channels"),
    ("nets.Arch(in_shape=(64,), widths=(2.5, 10))", lambda: nets.Arch(in_shape=(64,), widths=(2.5, 10)), ValueError,
     "widths"),
    ("TrainConfig(lr=nan)", lambda: _fit(lr=math.nan), ValueError, "TrainConfig.lr"),
    ("TrainConfig(lr=0)", lambda: _fit(lr=0.0), ValueError, "TrainConfig.lr"),
    ("TrainConfig(weight_decay=-1)", lambda: _fit(weight_decay=-1.0), ValueError, "TrainConfig.weight_decay"),
    ("TrainConfig(batch_size=1.5)", lambda: _fit(batch_size=1.5), ValueError, "TrainConfig.batch_size"),
    ("TrainConfig(dropout=1.0)", lambda: _fit(dropout=1.0), ValueError, "TrainConfig.dropout"),
    ("TrainConfig(optimizer='rmsprop')", lambda: _fit(optimizer="rmsprop"), ValueError, "TrainConfig.optimizer"),
    ("TrainConfig(momentum=1.0)", lambda: _fit(optimizer="momentum", momentum=1.0), ValueError, "TrainConfig.momentum"),
    ("fit(…, y with a label −1)", lambda: _fit(y=_labels("minus1")), ValueError, "y: class labels must lie in [0, 10)"),
    ("fit(…, y with a label 10)", lambda: _fit(y=_labels("ten")), ValueError, "y: class labels must lie in [0, 10)"),
    ("fit(…, float y, cross-entropy)", lambda: _fit(y=_labels("float")), ValueError, "squared_error"),
    ("fit(…, one-hot y)", lambda: _fit(y=_labels("onehot")), ValueError, "one-hot"),
    ("fit(…, y_test with a label 10)", lambda: _fit(y_test=_labels("ten")), ValueError, "y_test"),
    ("evaluate_line(…, y with a label 10)", lambda: _evaluate_line(_labels("ten")), ValueError, "y: class labels"),
    ("evaluate_line(…, float y)", lambda: _evaluate_line(_labels("float")), ValueError, "float32"),
    ("dropout.greedy_search(…, p=0)", lambda: _greedy(p=0.0), ValueError, "p must be"),
    ("dropout.greedy_search(…, p=−0.2)", lambda: _greedy(p=-0.2), ValueError, "p must be"),
    ("dropout.greedy_search(…, p=1)", lambda: _greedy(p=1.0), ValueError, "p must be"),
    ("dropout.greedy_search(…, rounds=−1)", lambda: _greedy(rounds=-1), ValueError, "rounds"),
    ("dropout.greedy_search(…, rescales=(0,))", lambda: _greedy(rescales=(0.0,)), ValueError, "rescales"),
    ("dropout.greedy_search(…, y with a label 10)", lambda: _greedy_labels(), ValueError, "y: class labels"),
    ("dropout.best_of_n(…, p=1)", lambda: _best_of_n(p=1.0), ValueError, "p must be"),
    ("dropout.best_of_n(…, n=0)", lambda: _best_of_n(n=0), ValueError, "n must be"),
    ("dropout.fixed_count(net, p=0, key)", lambda: _dropout("fixed_count", 0.0), ValueError, "p must be"),
    ("dropout.algorithm1(net, p=1.5, key)", lambda: _dropout("algorithm1", 1.5), ValueError, "p must be"),
    ("dropout.importance_kept_sets(net, x, p=0)", lambda: _importance(0.0), ValueError, "p must be"),
    ("dropout.KeptSets(([0.5, 1.0],), (2.0,))", lambda: _kept_floats(), ValueError, "kept set of hidden layer 1"),
    ("cushions.measure(…, p=0)", lambda: _measure(p=0.0), ValueError, "p must be"),
    ("cushions.measure(…, draws=0)", lambda: _measure(draws=0), ValueError, "draws"),
    ("cushions.measure(…, tol=nan)", lambda: _measure(tol=math.nan), ValueError, "tol"),
    ("cushions.measure(…, ts=(0, 2))", lambda: _measure(ts=(0.0, 2.0)), ValueError, "ts"),
    ("planes.evaluate_plane(…, resolution=1)", lambda: _plane(1), ValueError, "resolution"),
    ("planes.evaluate_plane(…, resolution=2.5)", lambda: _plane(2.5), ValueError, "resolution"),
    ("curves.bezier(a, b, bends=1.5)", lambda: _bezier(1.5), ValueError, "bends"),
    ("curves.train_curve(…, y with a label −1)", lambda: _train_curve(_labels("minus1")), ValueError, "y: class labels"),
    ("ensembles.compare_budgets(…, fge_cycle=3)", lambda: _compare_budgets(fge_cycle=3), ValueError, "fge_cycle"),
    ("ensembles.compare_budgets(…, budgets=(1.5,))", lambda: _compare_budgets(budgets=(1.5,)), ValueError, "budgets"),
    ("ensembles.compare_budgets(…, fge_alphas=(0.05, nan))", lambda: _compare_budgets(fge_alphas=(0.05, math.nan)),
     ValueError, "alpha2"),
    ("checkpoint.load(NaN/inf weights)", _load("nan"), ValueError, "1 NaN and 1 inf"),
    ("checkpoint.load(header is a JSON list)", _load("listheader"), ValueError, "header is a JSON list"),
    ("checkpoint.load(random bytes)", _load("random"), ValueError, "not a .npz archive"),
    ("checkpoint.load(a pickle)", _load("pickled"), ValueError, "not a .npz archive"),
    ("checkpoint.load(truncated)", _load("truncated"), ValueError, "truncated"),
    ("checkpoint.load(a directory)", _load("adir"), ValueError, "is a directory"),
    ("checkpoint.load(a foreign .npz)", _load("foreign"), ValueError, "not a stability checkpoint"),
    ("checkpoint.save(net with a NaN weight)", _save_nan, ValueError, "non-finite"),
]


def _greedy_labels():
    from stability.theory.dropout import greedy_search

    x, _ = _data()
    return greedy_search(_net(), x, _labels("ten"))


def _dropout(name: str, p: float):
    from stability.theory import dropout

    fn = getattr(dropout, name)
    return fn(_net(), p, _KEY)


def _importance(p: float):
    from stability.theory.dropout import importance_kept_sets

    return importance_kept_sets(_net(), _data()[0], p)


def _kept_floats():
    from stability.theory.dropout import KeptSets

    return KeptSets((np.array([0.5, 1.0]),), (2.0,))


def _bezier(bends):
    from stability.curves import curve

    return curve.bezier(_net(), nets.mlp(jax.random.PRNGKey(1), (64, 16, 10)), bends)


def _call(fn: Callable[..., Any], files: dict[str, str]) -> Any:
    return fn(files) if fn.__code__.co_argcount == 1 else fn()


@pytest.fixture()
def no_training(monkeypatch):
    """Every training loop of the library raises: an API case must be refused before one starts."""
    _import_every_module()
    import stability.core.train as train
    import stability.curves.curve as curve
    import stability.curves.ensembles as ensembles

    for mod, name in ((train, "_run_block"), (train, "_one_step"), (curve, "_train_block"), (curve, "_train_step"),
                      (ensembles, "fit")):
        monkeypatch.setattr(mod, name, _tripwire)


@pytest.mark.parametrize("what,fn,exc,text", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_refuses(what, fn, exc, text, files, no_training):
    with pytest.raises(exc) as info:
        _call(fn, files)
    msg = str(info.value)
    assert text in msg, f"{what}: {msg}"
    assert "\n" not in msg.strip(), f"{what}: not one line: {msg!r}"


def test_at_least_sixty_cases():
    assert len(CLI_CASES) + len(API_CASES) >= 60


if __name__ == "__main__":  # print the table of bad inputs and their messages
    import tempfile

    import stability.app.demo as demo_mod
    import stability.app.reproduce as reproduce_mod
    import stability.core.train as train_mod
    import stability.curves.curve as curve_mod
    import stability.curves.ensembles as ens_mod
    import stability.curves.planes as planes_mod
    import stability.theory.cushions as cushions_mod

    work = ((train_mod, "fit"), (curve_mod, "train_curve"), (ens_mod, "compare_budgets"),
            (planes_mod, "evaluate_plane"), (cushions_mod, "measure"), (reproduce_mod, "run"), (demo_mod, "_train_pair"))
    saved = [(mod, name, getattr(mod, name)) for mod, name in work]
    for mod, name in work:
        setattr(mod, name, _tripwire)
    root = Path(tempfile.mkdtemp())
    fs = make_files(root / "files")
    short = {v: Path(v).name for v in fs.values()}
    print("| # | input | exit | message |\n|---|---|---|---|")
    for k, (line, _) in enumerate(CLI_CASES, 1):
        out = root / f"case{k}"
        out.mkdir()
        rc, err, _ = run_cli(line, fs, out)
        shown = line.format(out="OUT", **{k2: Path(v).name for k2, v in fs.items()})
        msg = err.strip().replace(str(out), "OUT")
        for v, name in short.items():
            msg = msg.replace(v, name)
        print(f"| {k} | `stability {shown}` | {rc} | {msg} |")
    for mod, name, fn in saved:  # the API cases call these: only the training loops are tripwired
        setattr(mod, name, fn)
    for mod, name in ((train_mod, "_run_block"), (train_mod, "_one_step"), (curve_mod, "_train_block"),
                      (curve_mod, "_train_step"), (ens_mod, "fit")):
        setattr(mod, name, _tripwire)
    for k, (what, fn, exc, _) in enumerate(API_CASES, len(CLI_CASES) + 1):
        try:
            _call(fn, fs)
            msg = "(no error)"
        except Exception as e:  # noqa: BLE001
            msg = f"{type(e).__name__}: {e}"
            for v, name in short.items():
                msg = msg.replace(v, name)
        print(f"| {k} | `{what}` | – | {msg} |")


def test_every_reproduction_scale_passes_its_checks():
    """The positive control of the --set checks: every reproduction's declared QUICK and FULL scales pass."""
    from stability.app import reproduce

    for name in reproduce.names():
        for quick in (True, False):
            reproduce.scale_for(name, quick=quick)
