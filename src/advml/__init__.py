"""advml: adversarial machine learning on PyTorch.

Every capability in advml is one side of a two-player game ``min_theta max_eta J(theta, eta)``
(Goodfellow, *Adversarial Machine Learning*, AAAI 2019): attacks and verifiers are the
maximizing player, trainers the minimizing one.
"""

__version__ = "0.1.0"

from advml.errors import AdvmlError, UserError

__all__ = ["AdvmlError", "UserError", "__version__"]
