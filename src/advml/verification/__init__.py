"""Verification and certification: sound answers about what a network can output.

- The one internal form (:mod:`~advml.verification.network`): affine maps and ReLUs, from
  torch (:func:`from_torch`), ONNX (:func:`read_onnx`) or NNet (:func:`read_nnet`).
- Specifications (:mod:`~advml.verification.spec`): input boxes and unsafe output regions,
  from VNN-LIB (:func:`read_vnnlib`) or local robustness (:func:`robustness_property`).
- Interval bound propagation on torch modules (:mod:`~advml.verification.ibp`), shared with
  certified training.
- Randomized smoothing (:mod:`~advml.verification.smoothing`, Cohen et al. 2019).
"""

from advml.verification.ibp import (
    UnsupportedLayer,
    interval_bounds,
    margin_lower_bounds,
    verified_robust,
)
from advml.verification.network import (
    Conv,
    Dense,
    Elementwise,
    Network,
    ReLU,
    UnsupportedOperator,
    from_torch,
)
from advml.verification.nnet import NNetFile, parse_nnet, read_nnet
from advml.verification.onnx_import import read_onnx
from advml.verification.result import VerificationResult
from advml.verification.smoothing import (
    SmoothingResult,
    certified_accuracy,
    certify,
    clopper_pearson_lower,
    predict,
)
from advml.verification.spec import Conjunction, Property, robustness_property
from advml.verification.vnnlib import read_counterexample, read_vnnlib, write_counterexample

__all__ = [
    "Conjunction",
    "Conv",
    "Dense",
    "Elementwise",
    "NNetFile",
    "Network",
    "Property",
    "ReLU",
    "SmoothingResult",
    "UnsupportedLayer",
    "UnsupportedOperator",
    "VerificationResult",
    "certified_accuracy",
    "certify",
    "clopper_pearson_lower",
    "from_torch",
    "interval_bounds",
    "margin_lower_bounds",
    "parse_nnet",
    "predict",
    "read_counterexample",
    "read_nnet",
    "read_onnx",
    "read_vnnlib",
    "robustness_property",
    "verified_robust",
    "write_counterexample",
]
