"""Architectures by name: output shapes, layers, parameter counts, registry and build errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import advml.models as models
from advml.errors import UserError
from advml.models import Normalize, build, count_parameters, names, register
from advml.models import registry as registry_module

BUILTINS = ["linear", "mlp", "cnn-small", "lenet", "madry-mnist", "wong-mnist", "resnet-lite"]
IMAGE_ONLY = {"cnn-small", "lenet", "madry-mnist", "wong-mnist", "resnet-lite"}
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (2,)]
ALLOWED_LAYERS = (
    nn.Sequential,
    nn.Linear,
    nn.Conv2d,
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.BatchNorm2d,
    Normalize,
    models.PreActBlock,
)

#: Parameters on MNIST (1x28x28, 10 classes); quoted in docs/models.md.
MNIST_PARAMS = {
    "linear": 7_850,
    "mlp": 269_322,
    "cnn-small": 720_074,
    "lenet": 61_706,
    "madry-mnist": 3_274_634,
    "wong-mnist": 166_406,
    "resnet-lite": 271_994,
}


def _cannot_take(arch: str, shape: tuple[int, ...]) -> bool:
    return (arch in IMAGE_ONLY and len(shape) != 3) or (arch == "lenet" and shape[-1] < 12)


def test_builtin_names_are_listed():
    assert names()[: len(BUILTINS)] == BUILTINS


@pytest.mark.parametrize("arch", BUILTINS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_output_shape_or_clear_error(arch, shape):
    if _cannot_take(arch, shape):
        with pytest.raises(UserError, match=arch):
            build(arch, shape, 10)
        return
    model = build(arch, shape, 7).eval()
    with torch.no_grad():
        out = model(torch.rand(3, *shape))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", sorted(IMAGE_ONLY))
def test_image_networks_reject_flat_inputs_with_a_hint(arch):
    with pytest.raises(UserError, match=r"image inputs.*'linear' or 'mlp'"):
        build(arch, (2,), 2)


def test_too_small_images_name_the_minimum():
    with pytest.raises(UserError, match="at least 12x12 pixels, got 8x8"):
        build("lenet", (1, 8, 8), 10)
    with pytest.raises(UserError, match="at least 4x4 pixels, got 3x3"):
        build("wong-mnist", (1, 3, 3), 10)


@pytest.mark.parametrize("arch", BUILTINS)
def test_mnist_parameter_counts(arch):
    assert count_parameters(build(arch, (1, 28, 28), 10)) == MNIST_PARAMS[arch]


@pytest.mark.parametrize("arch", BUILTINS)
def test_only_plain_layers(arch):
    model = build(arch, (1, 28, 28), 10, mean=0.5, std=0.5)
    for module in model.modules():
        assert isinstance(module, ALLOWED_LAYERS), type(module)
        if isinstance(module, nn.ReLU):
            assert not module.inplace


def test_sequential_layouts_match_the_papers():
    madry = build("madry-mnist", (1, 28, 28), 10)
    assert isinstance(madry, nn.Sequential)
    convs = [m for m in madry if isinstance(m, nn.Conv2d)]
    fcs = [m for m in madry if isinstance(m, nn.Linear)]
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (32, (5, 5), (2, 2)),
        (64, (5, 5), (2, 2)),
    ]
    assert [(f.in_features, f.out_features) for f in fcs] == [(3136, 1024), (1024, 10)]
    wong = build("wong-mnist", (1, 28, 28), 10)
    convs = [m for m in wong if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (16, (4, 4), (2, 2)),
        (32, (4, 4), (2, 2)),
    ]
    assert [m.out_features for m in wong if isinstance(m, nn.Linear)] == [100, 10]
    lenet = build("lenet", (1, 28, 28), 10)
    assert [m.out_features for m in lenet if isinstance(m, nn.Linear)] == [120, 84, 10]


def test_mlp_hidden_sizes_are_configurable():
    model = build("mlp", (2,), 3, hidden=[5, 6, 7])
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [5, 6, 7, 3]
    assert build("mlp", (2,), 3, hidden=4).advml_spec["arch_kwargs"] == {"hidden": 4}
    assert count_parameters(build("mlp", (4,), 3, hidden=())) == 15


def test_resnet_lite_width_and_depth():
    small = build("resnet-lite", (3, 32, 32), 10, width=8, blocks=1)
    blocks = [m for m in small.modules() if isinstance(m, models.PreActBlock)]
    assert len(blocks) == 3
    assert small.fc.in_features == 32
    assert count_parameters(small) < count_parameters(build("resnet-lite", (3, 32, 32), 10))
    # adaptive pooling: other sizes work too
    assert small.eval()(torch.rand(2, 3, 20, 13)).shape == (2, 10)


def test_resnet_lite_trains_one_step():
    model = build("resnet-lite", (3, 16, 16), 4, width=4, blocks=1)
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 4, (8,))
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_normalize_is_prepended_and_recorded():
    model = build("cnn-small", (3, 32, 32), 10, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
    assert isinstance(model[0], Normalize)
    assert next(iter(model.named_children()))[0] == "normalize"
    x = torch.rand(2, 3, 32, 32)
    body = nn.Sequential(*list(model)[1:])
    torch.testing.assert_close(model(x), body(model[0](x)))
    assert model.advml_spec["normalization"] == {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}


def test_spec_records_everything_and_is_json():
    model = build("mlp", (2,), 3, mean=0.0, std=1.0)
    spec = model.advml_spec
    assert spec == {
        "arch": "mlp",
        "arch_kwargs": {"hidden": [256, 256]},
        "input_shape": [2],
        "num_classes": 3,
        "normalization": {"mean": [0.0], "std": [1.0]},
    }
    assert json.loads(json.dumps(spec)) == spec


def test_model_is_an_ordinary_module_in_training_mode():
    model = build("linear", (1, 8, 8), 10)
    assert model.training
    assert isinstance(model, nn.Module)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: build("nope", (1, 8, 8), 10), r"unknown architecture 'nope'.*cnn-small"),
        (lambda: build("cnn-small", (1, 28, 28), 10, width=3), r"no option 'width'.*none"),
        (lambda: build("mlp", (2,), 2, hiden=[3]), r"no option 'hiden'.*valid options: hidden"),
        (lambda: build("mlp", (2,), 2, hidden=[0]), "positive int"),
        (lambda: build("mlp", (2,), 2, hidden="12"), "sequence of ints"),
        (lambda: build("resnet-lite", (3, 8, 8), 2, blocks=0), "blocks must be a positive int"),
        (lambda: build("resnet-lite", (3, 8, 8), 2, width=2.5), "width must be a positive int"),
        (lambda: build("linear", (1, 0, 8), 10), "positive ints"),
        (lambda: build("linear", (), 10), "non-empty"),
        (lambda: build("linear", "1x8x8", 10), "sequence"),
        (lambda: build("linear", (2,), 0), "num_classes"),
        (lambda: build("linear", (2,), True), "num_classes"),
        (lambda: build("linear", (2,), 2, mean=0.5), "both mean and std"),
        (lambda: build("linear", (3, 4, 4), 2, mean=[0, 0], std=[1, 1]), "give 1 or 3"),
        (lambda: build("linear", (2,), 2, mean=0.0, std=-1.0), "std must be > 0"),
    ],
)
def test_build_errors_are_user_errors(call, match):
    with pytest.raises(UserError, match=match):
        call()


def test_register_adds_an_architecture(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    @register("toy-gen", paper="a test")
    def toy(input_shape, num_classes, *, width: int = 3) -> nn.Module:
        """A toy network."""
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], width * num_classes))

    assert "toy-gen" in names()
    info = models.architecture("toy-gen")
    assert info.summary == "A toy network." and info.options == {"width": 3}
    assert info.describe_options() == "width=3"
    model = build("toy-gen", (4,), 2, width=5, mean=0.0, std=1.0)
    assert model(torch.rand(1, 4)).shape == (1, 10)
    assert model.advml_spec["arch_kwargs"] == {"width": 5}


def test_register_rejects_bad_names_duplicates_and_signatures(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    with pytest.raises(ValueError, match="already registered"):
        register("mlp")(lambda input_shape, num_classes: nn.Identity())
    with pytest.raises(ValueError, match="must match"):
        register("Bad Name")
    with pytest.raises(ValueError, match="must take"):
        register("three-args")(lambda a, b, c: nn.Identity())
    with pytest.raises(ValueError, match="need default"):

        def no_default(input_shape, num_classes, *, size):
            return nn.Identity()

        register("no-default")(no_default)


def test_architecture_metadata_has_papers():
    for name in BUILTINS:
        info = models.architecture(name)
        assert info.paper and info.summary
    assert "Madry" in models.architecture("madry-mnist").paper
    assert "Wong" in models.architecture("wong-mnist").paper
    assert "LeCun" in models.architecture("lenet").paper


def test_count_parameters_trainable_only_and_shared():
    model = build("mlp", (2,), 2, hidden=[3])
    model.fc1.weight.requires_grad_(False)
    assert count_parameters(model) == 6 + 3 + 6 + 2
    assert count_parameters(model, trainable_only=True) == 3 + 6 + 2
    tied = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    tied[1].weight = tied[0].weight
    assert count_parameters(tied) == 9 + 3 + 3
