"""Verification: sound bounds on what a network can output over a set of inputs.

Now: interval bound propagation (:mod:`advml.verification.ibp`), shared with certified
training. Next: CROWN, branch-and-bound, ONNX/NNet/VNNLIB, randomized smoothing.
"""

from advml.verification.ibp import (
    UnsupportedLayer,
    interval_bounds,
    margin_lower_bounds,
    verified_robust,
)

__all__ = ["UnsupportedLayer", "interval_bounds", "margin_lower_bounds", "verified_robust"]
