"""Curves floor (imports ``stability.core`` only): learned Bezier / polygonal-chain curves over any pytree
(Garipov et al. 2018), curve metrics, BatchNorm recompute, flax models, ensembles (curve, FGE, snapshot,
independent) and loss planes. The curve API itself is re-exported here: ``stability.curves.bezier(...)``."""

from stability.curves.curve import (Curve, CurveTrainSpec, as_polycurve, bezier, control_points, curve_objective, curve_point,
                                    perturb_bends, point, points, polychain, straight, train_curve, trivial_path_point,
                                    trivial_point)

__all__ = ["Curve", "CurveTrainSpec", "as_polycurve", "bezier", "control_points", "curve_objective", "curve_point", "perturb_bends",
           "point", "points", "polychain", "straight", "train_curve", "trivial_path_point", "trivial_point"]
