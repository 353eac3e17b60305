"""Verification and certification: sound answers about what a network can output.

- The one internal form (:mod:`~advml.verification.network`): affine maps and ReLUs, from
  torch (:func:`from_torch`), ONNX (:func:`read_onnx`) or NNet (:func:`read_nnet`).
- Specifications (:mod:`~advml.verification.spec`): input boxes and unsafe output regions,
  from VNN-LIB (:func:`read_vnnlib`) or local robustness (:func:`robustness_property`).
- Bounds: interval bound propagation on torch modules (:mod:`~advml.verification.ibp`, shared
  with certified training); IBP, CROWN and α-CROWN on the internal form (:func:`bounds`).
- The complete verifier (:func:`verify`: branch-and-bound) and the exact MILP reference
  (:func:`verify_exact`, :func:`exact_bounds`).
- Certification of classifiers (:func:`certify_samples`: certified next to attacked) and
  randomized smoothing (:mod:`~advml.verification.smoothing`, Cohen et al. 2019).
"""

from advml.verification.bab import verify
from advml.verification.certification import CertificationReport, certify_samples
from advml.verification.crown import bounds
from advml.verification.ibp import (
    UnsupportedLayer,
    interval_bounds,
    margin_lower_bounds,
    verified_robust,
)
from advml.verification.milp import exact_bounds, solve_conjunction, verify_exact
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
    "CertificationReport",
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
    "bounds",
    "certified_accuracy",
    "certify",
    "certify_samples",
    "clopper_pearson_lower",
    "exact_bounds",
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
    "solve_conjunction",
    "verified_robust",
    "verify",
    "verify_exact",
    "write_counterexample",
]
