"""Training: the one trainer and its recipes (the minimizing player of each game)."""

from advml.training import adversarial as _adversarial  # noqa: F401  (registers recipes)
from advml.training import certified as _certified  # noqa: F401  (registers ibp)
from advml.training import vat as _vat  # noqa: F401  (registers the vat recipe)
from advml.training.recipe import (
    Recipe,
    StandardRecipe,
    StepInfo,
    get_recipe,
    recipe_names,
    register_recipe,
)
from advml.training.trainer import TrainConfig, Trainer, TrainResult

__all__ = [
    "Recipe",
    "StandardRecipe",
    "StepInfo",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "get_recipe",
    "recipe_names",
    "register_recipe",
]
