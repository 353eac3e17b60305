"""Image GAN architectures: shapes, options, conditioning, attention, style mixing,
progressive fade-in and the truncation sampler."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advml.errors import UserError
from advml.generative.nets import build_gan, gan_architecture, truncated_normal
from advml.generative.nets.attention import SelfAttention2d
from advml.generative.nets.conditional import (
    ConditionalBatchNorm2d,
    DiscriminatorHead,
    VectorConditionalBatchNorm2d,
)
from advml.generative.nets.progressive import growth_schedule, set_growth

LATENT = 8
IMAGE_ARCHS = ["dcgan", "resnet", "biggan", "stylegan", "progressive"]
SHAPES = [(1, 8, 8), (3, 16, 16), (1, 28, 28)]


def _labels(n: int, classes: int) -> torch.Tensor | None:
    return torch.arange(n) % classes if classes else None


def _run(pair, n: int = 4):
    y = _labels(n, pair.num_classes)
    x = pair.generator(torch.randn(n, pair.latent_dim), y)
    score, logits = pair.discriminator(x, y)
    return x, score, logits


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("arch", IMAGE_ARCHS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("classes", [0, 3])
def test_shapes_and_range(arch, shape, classes):
    pair = build_gan(arch, shape, LATENT, classes, width=4)
    x, score, logits = _run(pair)
    assert x.shape == (4, *shape)
    assert float(x.detach().min()) >= 0.0 and float(x.detach().max()) <= 1.0
    assert score.shape == (4,)
    assert logits is None  # default conditioning is projection (or none)
    score.sum().backward()
    no_grad = {n for n, p in pair.generator.named_parameters() if p.grad is None}
    if arch == "progressive":  # fully grown: the lower-resolution toRGB layers are idle
        levels = pair.generator.plan.levels
        no_grad -= {f"to_rgb.{s}.{w}" for s in range(levels) for w in ("weight", "bias")}
    assert not no_grad


@pytest.mark.parametrize("arch", ["dcgan", "resnet", "stylegan", "progressive"])
def test_acgan_conditioning_returns_class_logits(arch):
    pair = build_gan(arch, (1, 16, 16), LATENT, 5, width=4, conditioning="acgan")
    _, score, logits = _run(pair)
    assert score.shape == (4,) and logits.shape == (4, 5)
    # the score ignores y: no labels needed
    assert pair.discriminator(torch.rand(4, 1, 16, 16))[1].shape == (4, 5)


@pytest.mark.parametrize("shape", SHAPES)
def test_acgan_pair(shape):
    pair = build_gan("acgan", shape, LATENT, 4, width=4)
    x, score, logits = _run(pair)
    assert x.shape == (4, *shape) and score.shape == (4,) and logits.shape == (4, 4)
    # the generator reads the one-hot label: same z, other label, other image
    pair.generator.eval()
    z = torch.randn(1, LATENT).expand(4, -1)
    images = pair.generator(z, torch.arange(4))
    assert not torch.allclose(images[0], images[1])
    with pytest.raises(UserError, match="num_classes"):
        build_gan("acgan", shape, LATENT, 0)


@pytest.mark.parametrize("arch", ["dcgan", "resnet", "biggan"])
@pytest.mark.parametrize("resolution", [4, 8, 16])
def test_attention_at_every_resolution(arch, resolution):
    pair = build_gan(arch, (3, 16, 16), LATENT, 0, width=4, attention_at=resolution)
    blocks = [m for m in pair.generator.modules() if isinstance(m, SelfAttention2d)]
    blocks += [m for m in pair.discriminator.modules() if isinstance(m, SelfAttention2d)]
    assert len(blocks) == 2
    seen = {}

    def hook(module, inputs, output):
        seen[id(module)] = output.shape[-1]

    for block in blocks:
        block.register_forward_hook(hook)
    x, score, _ = _run(pair)
    assert x.shape == (4, 3, 16, 16) and score.shape == (4,)
    assert sorted(seen.values()) == [resolution, resolution]


def test_attention_two_resolutions_and_bad_resolution():
    pair = build_gan("dcgan", (1, 28, 28), LATENT, 0, width=4, attention_at=[7, 14])
    assert sum(isinstance(m, SelfAttention2d) for m in pair.generator.modules()) == 2
    with pytest.raises(UserError, match=r"choose from \[7, 14, 28\]"):
        build_gan("dcgan", (1, 28, 28), LATENT, 0, attention_at=16)


@pytest.mark.parametrize("shape", [(1, 9, 9), (1, 8, 16), (8, 8), (1, 4, 4), (1, 2, 2)], ids=str)
def test_bad_shapes_are_user_errors(shape):
    with pytest.raises(UserError):
        build_gan("dcgan", shape, LATENT, 0)


def test_bad_options_and_inputs_are_user_errors():
    with pytest.raises(UserError, match="conditioning"):
        build_gan("resnet", (1, 8, 8), LATENT, 3, conditioning="concat")
    with pytest.raises(UserError, match="no option"):
        build_gan("dcgan", (1, 8, 8), LATENT, 0, depth=3)
    with pytest.raises(UserError, match="output"):
        build_gan("dcgan", (1, 8, 8), LATENT, 0, output="relu")
    pair = build_gan("dcgan", (1, 8, 8), LATENT, 3, width=4)
    with pytest.raises(UserError, match="class-conditional"):
        pair.generator(torch.randn(2, LATENT))
    with pytest.raises(UserError, match=r"\[0, 3\)"):
        pair.generator(torch.randn(2, LATENT), torch.tensor([0, 3]))
    with pytest.raises(UserError, match="z of shape"):
        pair.generator(torch.randn(2, LATENT + 1), torch.tensor([0, 1]))
    with pytest.raises(UserError, match="labels"):
        pair.discriminator(torch.rand(2, 1, 8, 8))
    with pytest.raises(UserError, match="expects images"):
        pair.discriminator(torch.rand(2, 1, 16, 16), torch.tensor([0, 1]))


def test_spec_rebuilds_same_parameters():
    pair = build_gan("biggan", (3, 16, 16), 12, 4, width=4, attention_at=8, embed_dim=6)
    spec = pair.spec
    again = build_gan(
        spec["arch"],
        tuple(spec["data_shape"]),
        spec["latent_dim"],
        spec["num_classes"],
        **spec["options"],
    )
    for a, b in ((pair.generator, again.generator), (pair.discriminator, again.discriminator)):
        sa, sb = a.state_dict(), b.state_dict()
        assert {k: v.shape for k, v in sa.items()} == {k: v.shape for k, v in sb.items()}
    assert set(gan_architecture("dcgan").options) >= {"width", "attention_at", "conditioning"}


@pytest.mark.parametrize("arch", ["resnet", "biggan", "stylegan", "progressive"])
def test_spectral_norm_wraps_discriminators(arch):
    from torch.nn.utils import parametrize

    from advml.generative.losses import apply_spectral_norm

    pair = build_gan(arch, (1, 8, 8), LATENT, 3, width=4)
    apply_spectral_norm(pair.discriminator)
    layers = [m for m in pair.discriminator.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    _, score, _ = _run(pair)
    assert torch.isfinite(score).all()


# --------------------------------------------------------------------------- attention


def test_self_attention_starts_as_identity_and_matches_sagan_equations():
    torch.manual_seed(1)
    block = SelfAttention2d(16)
    x = torch.randn(2, 16, 5, 3)
    assert float(block.gamma.detach()) == 0.0
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    # Zhang et al. 2019, Eq. 1-2 written position by position with einsum
    f = torch.einsum("oc,nci->noi", block.key.weight[:, :, 0, 0], x.flatten(2))
    g = torch.einsum("oc,ncj->noj", block.query.weight[:, :, 0, 0], x.flatten(2))
    h = torch.einsum("oc,nci->noi", block.value.weight[:, :, 0, 0], x.flatten(2))
    s = torch.einsum("nci,ncj->nij", f, g)  # s_ij = f(x_i)^T g(x_j)
    beta = torch.softmax(s, dim=1)  # normalised over i
    o = torch.einsum("nij,nci->ncj", beta, h)
    o = torch.einsum("oc,ncj->noj", block.out.weight[:, :, 0, 0], o).view_as(x)
    assert torch.allclose(block(x), x + 0.7 * o, atol=1e-5)


# --------------------------------------------------------------------------- conditioning


def test_conditional_batch_norm_uses_the_class_gain_and_bias():
    torch.manual_seed(2)
    cbn = ConditionalBatchNorm2d(6, 3)
    x, y = torch.randn(8, 6, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    plain = F.batch_norm(x, None, None, training=True, eps=cbn.bn.eps)
    assert torch.allclose(cbn(x, y), plain, atol=1e-6)  # zero init: unit gain, no bias
    with torch.no_grad():
        cbn.gain.weight.normal_()
        cbn.bias.weight.normal_()
    gamma, beta = cbn.gain.weight[y], cbn.bias.weight[y]
    expected = (1 + gamma[:, :, None, None]) * plain + beta[:, :, None, None]
    assert torch.allclose(cbn(x, y), expected, atol=1e-5)


def test_vector_conditional_batch_norm_is_linear_in_the_condition():
    torch.manual_seed(3)
    cbn = VectorConditionalBatchNorm2d(4, 5)
    with torch.no_grad():
        cbn.gain.weight.normal_()
        cbn.bias.weight.normal_()
    x, c = torch.randn(6, 4, 3, 3), torch.randn(6, 5)
    plain = F.batch_norm(x, None, None, training=True, eps=cbn.bn.eps)
    gain = 1 + c @ cbn.gain.weight.T
    expected = gain[:, :, None, None] * plain + (c @ cbn.bias.weight.T)[:, :, None, None]
    assert torch.allclose(cbn(x, c), expected, atol=1e-5)


def test_projection_score_is_psi_plus_inner_product():
    torch.manual_seed(4)
    pair = build_gan("resnet", (1, 8, 8), LATENT, 5, width=4)
    d = pair.discriminator
    x = torch.rand(6, 1, 8, 8)
    y1, y2 = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([4, 3, 2, 1, 0, 1])
    phi = d.features(x)
    psi = d.head.linear(phi).squeeze(1)
    v = d.head.embed.weight
    assert torch.allclose(d(x, y1)[0], psi + (v[y1] * phi).sum(1), atol=1e-5)
    diff = d(x, y1)[0] - d(x, y2)[0]
    assert torch.allclose(diff, ((v[y1] - v[y2]) * phi).sum(1), atol=1e-5)
    assert diff[2] == 0  # same label, same score


def test_head_without_classes_ignores_labels():
    head = DiscriminatorHead(7, 0)
    phi = torch.randn(3, 7)
    assert torch.equal(head(phi, torch.tensor([0, 1, 2]))[0], head(phi)[0])


def test_biggan_shares_one_embedding_across_blocks():
    pair = build_gan("biggan", (3, 32, 32), 16, 10, width=4, embed_dim=6)
    g = pair.generator
    embeddings = [m for m in g.modules() if isinstance(m, nn.Embedding)]
    assert len(embeddings) == 1 and embeddings[0].embedding_dim == 6
    norms = [m for m in g.modules() if isinstance(m, VectorConditionalBatchNorm2d)]
    assert len(norms) == 2 * 3  # two CBNs in each of the 3 blocks
    chunks = g.shared.sizes  # 16 split into 4 chunks
    assert sum(chunks) == 16 and len(chunks) == 4
    for block, chunk in zip(g.blocks, chunks[1:], strict=True):
        assert block.norm1.gain.in_features == chunk + 6
    # the shared embedding is the conditioning: changing y changes the image
    g.eval()
    z = torch.randn(1, 16).expand(2, -1)
    images = g(z, torch.tensor([0, 1]))
    with torch.no_grad():
        for norm in norms:
            norm.gain.weight.normal_()
    images = g(z, torch.tensor([0, 1]))
    assert not torch.allclose(images[0], images[1])
    with pytest.raises(UserError, match="latent_dim"):
        build_gan("biggan", (3, 32, 32), 3, 10)


def test_truncated_normal_bounds_and_distribution():
    gen = torch.Generator().manual_seed(0)
    z = truncated_normal(20000, 4, 1.0, gen)
    assert z.shape == (20000, 4) and float(z.abs().max()) <= 1.0
    # variance of N(0,1) truncated to [-t, t]: 1 - 2 t phi(t) / (Phi(t) - Phi(-t))
    t = 1.0
    phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(t / math.sqrt(2))
    assert abs(float(z.var()) - (1 - 2 * t * phi / mass)) < 0.01
    assert abs(float(z.mean())) < 0.01
    again = truncated_normal(20000, 4, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    tiny = truncated_normal(500, 3, 1e-3, torch.Generator().manual_seed(1))
    assert float(tiny.abs().max()) <= 1e-3 and float(tiny.abs().max()) > 0
    wide = truncated_normal(1000, 2, 10.0)
    assert float(wide.std()) > 0.9  # nothing to redraw: plain normal
    with pytest.raises(UserError):
        truncated_normal(3, 2, 0.0)


# --------------------------------------------------------------------------- StyleGAN


def _style(**options):
    pair = build_gan("stylegan", (1, 16, 16), LATENT, 0, width=4, mapping_layers=2, **options)
    return pair.generator


def test_stylegan_mixing_crossover():
    torch.manual_seed(5)
    g = _style().eval()
    assert g.num_ws == 2 * 3  # 4, 8, 16
    with torch.no_grad():  # non-trivial noise strengths, to check noise=False drops them
        for m in g.modules():
            if hasattr(m, "weight") and m.__class__.__name__ == "NoiseInput":
                m.weight.normal_()
    z1, z2 = torch.randn(3, LATENT), torch.randn(3, LATENT)
    only1, only2 = g(z1, noise=False), g(z2, noise=False)
    assert torch.allclose(g.mix(z1, z2, g.num_ws, noise=False), only1, atol=1e-6)
    assert torch.allclose(g.mix(z1, z2, 0, noise=False), only2, atol=1e-6)
    mixed = g.mix(z1, z2, 2, noise=False)
    assert not torch.allclose(mixed, only1) and not torch.allclose(mixed, only2)
    per_sample = g.mix(z1, z2, torch.tensor([0, 2, 6]), noise=False)
    assert torch.allclose(per_sample[0], only2[0], atol=1e-6)
    assert torch.allclose(per_sample[1], mixed[1], atol=1e-6)
    assert torch.allclose(per_sample[2], only1[2], atol=1e-6)
    assert not torch.allclose(g(z1), g(z1))  # noise inputs are random per call


def test_stylegan_training_mixing_and_w_truncation():
    torch.manual_seed(6)
    g = _style(style_mixing=1.0)
    z = torch.randn(4, LATENT)
    g.train()
    before = g.w_avg.clone()
    torch.manual_seed(7)
    mixed = g(z, noise=False)
    assert not torch.equal(g.w_avg, before)  # w̄ tracked in training
    g.style_mixing = 0.0
    torch.manual_seed(7)
    plain = g(z, noise=False)
    assert not torch.allclose(mixed, plain)
    g.eval()
    # psi = 0 maps every latent to w̄: identical images
    out = g(torch.randn(3, LATENT), truncation=0.0, noise=False)
    assert torch.allclose(out[0], out[1], atol=1e-6) and torch.allclose(out[1], out[2], atol=1e-6)
    # psi = 1 is no truncation
    assert torch.allclose(g(z, truncation=1.0, noise=False), g(z, noise=False))
    with pytest.raises(UserError):
        _style(style_mixing=1.5)


# --------------------------------------------------------------------------- progressive


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 16)])
def test_progressive_fade_in_endpoints(shape):
    torch.manual_seed(8)
    pair = build_gan("progressive", shape, LATENT, 0, width=4)
    g, d = pair.generator.eval(), pair.discriminator.eval()
    levels = g.plan.levels
    z, x = torch.randn(3, LATENT), torch.rand(3, *shape)
    for stage in range(1, levels + 1):
        set_growth(pair, stage - 1, 1.0)
        old_image, old_score = g(z), d(x)[0]
        set_growth(pair, stage, 0.0)
        assert torch.allclose(g(z), old_image, atol=1e-6)
        assert torch.allclose(d(x)[0], old_score, atol=1e-5)
        set_growth(pair, stage, 1.0)
        new_image, new_score = g(z), d(x)[0]
        assert not torch.allclose(new_image, old_image)
        assert not torch.allclose(new_score, old_score)
        set_growth(pair, stage, 0.5)
        half = g(z)
        assert not torch.allclose(half, old_image) and not torch.allclose(half, new_image)
    # a low stage draws a blocky image: constant on 2**(levels) x 2**(levels) tiles
    set_growth(pair, 0, 1.0)
    image = g(z)
    tile = 2**levels
    assert torch.equal(
        image, image[:, :, ::tile, ::tile].repeat_interleave(tile, 2).repeat_interleave(tile, 3)
    )
    with pytest.raises(UserError):
        set_growth(pair, levels + 1, 1.0)
    with pytest.raises(UserError):
        set_growth(pair, 0, 1.5)


def test_growth_schedule():
    assert growth_schedule(0.0, 3) == (0, 1.0)
    assert growth_schedule(0.25, 3) == (1, 0.0)
    assert growth_schedule(0.25 + 0.0625, 3) == (1, 0.5)
    assert growth_schedule(0.25 + 0.125, 3) == (1, 1.0)
    assert growth_schedule(1.0, 3) == (3, 1.0)
    stages = [growth_schedule(p / 100, 3)[0] for p in range(101)]
    assert stages == sorted(stages) and stages[-1] == 3
