"""Offline GAN metrics on images: FID, KID and improved precision/recall in the feature space
of a classifier trained on the dataset itself ("MNIST-FID", never "Inception FID"), Stacked-
MNIST mode coverage, and GAN-test accuracy. See ``docs/gan-architectures.md``.

>>> from advml.generative.metrics import feature_network, score_images   # doctest: +SKIP
>>> net = feature_network("mnist")                                         # doctest: +SKIP
>>> score_images(real, fake, features=net)                                 # doctest: +SKIP
{'MNIST-FID': ..., 'MNIST-KID': ..., 'MNIST-KID-std': ..., 'MNIST-precision': ..., ...}
"""

from advml.generative.metrics.features import (
    FeatureNetwork,
    dataset_label,
    feature_network,
    penultimate,
    trained_classifier,
)
from advml.generative.metrics.fid import (
    KernelDistance,
    PrecisionRecall,
    fid,
    frechet_distance,
    gaussian_statistics,
    kernel_distance,
    knn_radii,
    precision_recall,
    trace_sqrt_product,
)
from advml.generative.metrics.gan_test import GanTestResult, gan_test
from advml.generative.metrics.image import embed, score_features, score_images
from advml.generative.metrics.inception import InceptionV3Pool, inception_network
from advml.generative.metrics.modes import ModeCoverage, mode_coverage
from advml.generative.metrics.stacked import (
    STACKED_MODES,
    StackedModeCoverage,
    classify_modes,
    load_stacked_mnist,
    stack_digits,
    stacked_mnist_coverage,
    stacked_mode_coverage,
)

__all__ = [
    "STACKED_MODES",
    "FeatureNetwork",
    "GanTestResult",
    "InceptionV3Pool",
    "KernelDistance",
    "ModeCoverage",
    "PrecisionRecall",
    "StackedModeCoverage",
    "classify_modes",
    "dataset_label",
    "embed",
    "feature_network",
    "fid",
    "frechet_distance",
    "gan_test",
    "gaussian_statistics",
    "inception_network",
    "kernel_distance",
    "knn_radii",
    "load_stacked_mnist",
    "mode_coverage",
    "penultimate",
    "precision_recall",
    "score_features",
    "score_images",
    "stack_digits",
    "stacked_mnist_coverage",
    "stacked_mode_coverage",
    "trace_sqrt_product",
    "trained_classifier",
]
