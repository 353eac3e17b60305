"""Attacks: inner maximizers that look for inputs the model gets wrong.

Every attack has one signature::

    attack(model, x, y, threat, *, targeted=False, **hyperparameters) -> AttackResult

``model`` maps inputs in the threat's box (pixels in [0, 1]) to logits; ``y`` holds the true
labels (or, with ``targeted=True``, the target classes); ``threat`` is an
:mod:`advml.threats` object. Configure one with :func:`functools.partial`; pick one by name
with :func:`get`. Every attack puts the model in eval mode (restored afterwards), never changes
its parameters, returns its best iterate per sample, and checks that the result lies in the
threat model (raising :class:`ThreatViolation` otherwise).
"""

from advml.attacks import losses
from advml.attacks.apgd import apgd, apgd_ce, apgd_dlr, apgd_t
from advml.attacks.base import AttackResult, ModelOutputError, ThreatViolation, frozen_eval
from advml.attacks.bim import bim, illc
from advml.attacks.cw import cw, cw_l2
from advml.attacks.deepfool import deepfool
from advml.attacks.ead import ead
from advml.attacks.eot import EOTModel, EOTResult, eot, eot_model, expected_success
from advml.attacks.fab import fab, fab_t
from advml.attacks.fgsm import fgm, fgsm
from advml.attacks.hopskipjump import hopskipjump
from advml.attacks.jsma import jsma
from advml.attacks.lbfgs import lbfgs
from advml.attacks.mifgsm import mifgsm
from advml.attacks.patch import Patch, apply_patch, patch, train_patch
from advml.attacks.pgd import pgd
from advml.attacks.registry import AttackInfo, get, info, names, register
from advml.attacks.spsa import spsa
from advml.attacks.square import square
from advml.attacks.sticker import sticker, stripes
from advml.attacks.transfer import SurrogateEnsemble, transfer
from advml.attacks.universal import universal, universal_perturbation

__all__ = [
    "AttackInfo",
    "AttackResult",
    "EOTModel",
    "EOTResult",
    "ModelOutputError",
    "Patch",
    "SurrogateEnsemble",
    "ThreatViolation",
    "apgd",
    "apgd_ce",
    "apgd_dlr",
    "apgd_t",
    "apply_patch",
    "bim",
    "cw",
    "cw_l2",
    "deepfool",
    "ead",
    "eot",
    "eot_model",
    "expected_success",
    "fab",
    "fab_t",
    "fgm",
    "fgsm",
    "frozen_eval",
    "get",
    "hopskipjump",
    "illc",
    "info",
    "jsma",
    "lbfgs",
    "losses",
    "mifgsm",
    "names",
    "patch",
    "pgd",
    "register",
    "spsa",
    "square",
    "sticker",
    "stripes",
    "train_patch",
    "transfer",
    "universal",
    "universal_perturbation",
]
