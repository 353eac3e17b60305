"""PacGAN's mode metrics on constructed sample sets."""

import math

import pytest
import torch

from advml.data.toy import toy_modes, toy_sample
from advml.errors import UserError
from advml.generative.metrics.modes import PROTOCOL_SAMPLES, mode_coverage


@pytest.mark.parametrize("name", ["toy-ring", "toy-grid"])
def test_samples_on_every_centre_cover_all_modes_uniformly(name):
    centres, sigma = toy_modes(name)
    samples = centres.repeat(5, 1)
    score = mode_coverage(samples, centres, sigma)
    assert score.modes == score.num_modes == len(centres)
    assert score.high_quality == 1.0
    assert score.reverse_kl == 0.0
    assert score.counts == (5,) * len(centres)


@pytest.mark.parametrize("name", ["toy-ring", "toy-grid"])
def test_all_samples_on_one_mode(name):
    centres, sigma = toy_modes(name)
    samples = centres[3].repeat(50, 1) + 0.5 * sigma  # within 3 sigma of mode 3
    score = mode_coverage(samples, centres, sigma)
    assert score.modes == 1
    assert score.high_quality == 1.0
    assert score.reverse_kl == pytest.approx(math.log(len(centres)))


def test_hand_computed_mixture_of_cases():
    centres, sigma = toy_modes("toy-ring")  # 8 modes, sigma 0.01
    samples = torch.stack(
        [
            centres[0],
            centres[0] + torch.tensor([2.9 * sigma, 0.0]),  # inside 3 sigma
            centres[1] + torch.tensor([0.0, -2.0 * sigma]),
            centres[2] + torch.tensor([3.1 * sigma, 0.0]),  # outside: low quality
            torch.zeros(2),  # the centre of the ring: far from every mode
        ]
    )
    score = mode_coverage(samples, centres, sigma)
    assert score.modes == 2
    assert score.high_quality == pytest.approx(3 / 5)
    q = torch.tensor([2 / 3, 1 / 3])
    assert score.reverse_kl == pytest.approx(float((q * torch.log(q * 8)).sum()))
    assert score.counts == (2, 1, 0, 0, 0, 0, 0, 0)


def test_no_high_quality_sample_has_no_kl():
    centres, sigma = toy_modes("toy-grid")
    score = mode_coverage(torch.full((10, 2), 100.0), centres, sigma)
    assert (score.modes, score.high_quality, score.reverse_kl) == (0, 0.0, None)


def test_real_data_scores_like_the_target():
    for name in ("toy-ring", "toy-grid"):
        centres, sigma = toy_modes(name)
        x, _ = toy_sample(name, PROTOCOL_SAMPLES, seed=3)
        score = mode_coverage(x, centres, sigma)
        assert score.modes == len(centres)
        # a 2-D Gaussian is within 3 sigma (radius) with probability 1 - exp(-4.5) = 98.9 %
        assert score.high_quality == pytest.approx(1 - math.exp(-4.5), abs=0.01)
        assert score.reverse_kl < 0.02


def test_bad_shapes_are_user_errors():
    centres, sigma = toy_modes("toy-ring")
    with pytest.raises(UserError, match="samples"):
        mode_coverage(torch.zeros(5, 3), centres, sigma)
    with pytest.raises(UserError, match="at least one"):
        mode_coverage(torch.zeros(0, 2), centres, sigma)
