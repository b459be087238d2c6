"""Stacked densities: exact mixtures of flows, and weights fitted on held-out rows."""

import math

import numpy as np
import pytest
import torch

from skflow.engine import ActNorm, Compose, FixedAffine, Flow
from skflow.engine.bases import GaussianMixtureBase, StudentTBase
from skflow.engine.stacking import DensityMixture, stacking_weights

D = torch.float64


def _components():
    """Three different exact densities in 2-D: a shifted flow, a mixture, a Student-t."""
    g = torch.Generator().manual_seed(0)
    shifted = Flow(Compose([FixedAffine(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0]))]), 2).double()
    a = torch.randn(2, 2, 2, generator=g, dtype=D)
    mixture = Flow(ActNorm(2), GaussianMixtureBase(
        torch.tensor([0.3, 0.7], dtype=D), torch.tensor([[-3.0, 0.0], [2.0, 2.0]], dtype=D),
        a @ a.transpose(1, 2) + 0.2 * torch.eye(2, dtype=D),
    )).double()
    student = Flow(Compose([]), StudentTBase(2)).double()
    with torch.no_grad():
        student.base.raw_df.fill_(StudentTBase._raw(4.0))
    return [shifted, mixture, student]


def test_log_prob_is_the_weighted_sum_of_densities():
    parts = _components()
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=D)
    mix = DensityMixture(parts, weights)
    x = 3 * torch.randn(100, 2, generator=torch.Generator().manual_seed(1), dtype=D)
    with torch.no_grad():
        expected = torch.log(sum(w * torch.exp(p.log_prob(x)) for w, p in zip(weights, parts)))
        torch.testing.assert_close(mix.log_prob(x), expected, rtol=1e-12, atol=1e-12)
        # Far rows: no underflow to -inf where one component still has mass.
        far = torch.tensor([[1e3, 1e3]], dtype=D)
        assert torch.isfinite(mix.log_prob(far)).all()


def test_integrates_to_one_on_a_2d_grid():
    mix = DensityMixture(_components(), torch.tensor([0.2, 0.5, 0.3], dtype=D))
    t = torch.linspace(-60, 60, 1201, dtype=D)
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    with torch.no_grad():
        mass = torch.exp(mix.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1))).sum().item()
    # The Student-t (df 4) component leaves ~1e-5 of its mass beyond 60.
    assert mass * (t[1] - t[0]).item() ** 2 == pytest.approx(1.0, abs=2e-3)


def test_samples_agree_with_log_prob():
    """Chi-square test of 100k samples binned on a grid against the integrated density."""
    mix = DensityMixture(_components(), torch.tensor([0.2, 0.5, 0.3], dtype=D))
    n = 100_000
    with torch.no_grad():
        samples = mix.sample(n, torch.Generator().manual_seed(0))
    assert samples.shape == (n, 2) and samples.dtype == D
    edges = np.linspace(-8, 8, 17)
    observed, _, _ = np.histogram2d(samples[:, 0].numpy(), samples[:, 1].numpy(), bins=[edges, edges])
    fine = np.linspace(-8, 8, 16 * 20 + 1)
    centres = 0.5 * (fine[1:] + fine[:-1])
    xx, yy = np.meshgrid(centres, centres, indexing="ij")
    with torch.no_grad():
        density = torch.exp(mix.log_prob(torch.tensor(np.stack([xx.ravel(), yy.ravel()], 1)))).numpy()
    expected = n * density.reshape(16, 20, 16, 20).sum(axis=(1, 3)) * (fine[1] - fine[0]) ** 2
    keep = expected > 20
    chi2 = (((observed - expected) ** 2)[keep] / expected[keep]).sum()
    dof = keep.sum() - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof), (chi2, dof)


def test_sampling_is_seeded_by_the_local_generator_only():
    mix = DensityMixture(_components(), torch.tensor([0.2, 0.5, 0.3], dtype=D))
    state = torch.random.get_rng_state()
    with torch.no_grad():
        a = mix.sample(300, torch.Generator().manual_seed(3))
        b = mix.sample(300, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.equal(state, torch.random.get_rng_state())


def test_weights_recover_the_mixing_proportions():
    parts = _components()[:2]
    true = torch.tensor([0.35, 0.65], dtype=D)
    with torch.no_grad():
        x = DensityMixture(parts, true).sample(20_000, torch.Generator().manual_seed(0))
        log_probs = torch.stack([p.log_prob(x) for p in parts], dim=1)
    w = stacking_weights(log_probs, prior=0.0)
    torch.testing.assert_close(w, true, rtol=0, atol=0.02)

    # Maximum likelihood: the fitted weights beat nearby ones on these rows.
    def objective(v):
        return torch.logsumexp(log_probs + torch.log(v), dim=1).mean().item()
    for delta in (-0.02, 0.02):
        assert objective(w) >= objective(w + torch.tensor([delta, -delta], dtype=D))


def test_prior_shrinks_weights_and_bad_rows_are_ignored():
    # Three rows that all prefer the first component.
    log_probs = torch.tensor([[0.0, -5.0], [0.0, -5.0], [0.0, -5.0]], dtype=D)
    ml = stacking_weights(log_probs, prior=0.0)
    shrunk = stacking_weights(log_probs, prior=1.0)
    assert ml[0] > 0.98 and 0.5 < shrunk[0] < ml[0]
    assert shrunk.sum().item() == pytest.approx(1.0)
    # A row no component can explain carries no information; NaN counts as -inf.
    extra = torch.tensor([[-math.inf, -math.inf], [math.nan, math.nan]], dtype=D)
    torch.testing.assert_close(stacking_weights(torch.cat([log_probs, extra]), prior=1.0), shrunk)
    # Row weights count as repeated rows.
    two = torch.tensor([[0.0, -5.0], [-5.0, 0.0]], dtype=D)
    weighted = stacking_weights(two, torch.tensor([3.0, 1.0], dtype=D), prior=0.0)
    repeated = stacking_weights(two[[0, 0, 0, 1]], prior=0.0)
    torch.testing.assert_close(weighted, repeated)


def test_prior_per_component_floors_each_weight():
    # Ten rows that no component but the first explains: the others keep their pseudo-rows' share.
    log_probs = torch.tensor([[0.0, -50.0, -50.0]] * 10, dtype=D)
    prior = torch.tensor([1.0, 1.0, 0.1], dtype=D)
    w = stacking_weights(log_probs, prior=prior)
    torch.testing.assert_close(w, torch.tensor([11.0, 1.0, 0.1], dtype=D) / 12.1, rtol=1e-6, atol=0)
    torch.testing.assert_close(stacking_weights(log_probs, prior=torch.ones(3, dtype=D)),
                               stacking_weights(log_probs, prior=1.0))


def test_invalid_mixtures_are_rejected():
    parts = _components()
    with pytest.raises(ValueError, match="one weight per component"):
        DensityMixture(parts, torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="non-negative"):
        DensityMixture(parts, torch.tensor([1.0, -1.0, 1.0]))


def _gain(log_probs, optional, weight=None):
    """Brute force: summed held-out log-likelihood of the best weights with minus without ``optional``."""
    def best(columns):
        w = stacking_weights(log_probs[:, columns], weight, prior=1.0)
        row_weight = torch.ones(len(log_probs), dtype=D) if weight is None else weight / weight.mean()
        return (row_weight * torch.logsumexp(log_probs[:, columns] + torch.log(w), dim=1)).sum().item()
    return best(torch.arange(log_probs.shape[1])) - best(torch.nonzero(~optional).flatten())


@pytest.mark.parametrize("weighted", [False, True])
def test_optional_components_must_earn_their_place(weighted):
    shifted, mixture, student = _components()
    optional = torch.tensor([False, False, True])
    with torch.no_grad():
        # Rows of the first two components: the Student-t adds nothing (its pseudo-row's weight even costs).
        mix = DensityMixture([shifted, mixture], torch.tensor([0.35, 0.65]))
        x = mix.sample(300, torch.Generator().manual_seed(0))
        log_probs = torch.stack([p.log_prob(x) for p in (shifted, mixture, student)], dim=1)
    weight = torch.rand(300, generator=torch.Generator().manual_seed(1), dtype=D) + 0.5 if weighted else None
    gain = _gain(log_probs, optional, weight)
    assert abs(gain) < 3.0
    full = stacking_weights(log_probs, weight, prior=1.0)
    without = stacking_weights(log_probs[:, :2], weight, prior=1.0)
    dropped = stacking_weights(log_probs, weight, prior=1.0, optional=optional, min_gain=gain + 1e-6)
    assert dropped[2].item() == 0.0
    torch.testing.assert_close(dropped[:2], without)
    kept = stacking_weights(log_probs, weight, prior=1.0, optional=optional, min_gain=gain - 1e-6)
    torch.testing.assert_close(kept, full)
    assert kept[2] > 0
    if weighted:  # row weights count relative to each other
        torch.testing.assert_close(
            stacking_weights(log_probs, 7.0 * weight, prior=1.0, optional=optional, min_gain=gain + 1e-6),
            dropped,
        )

    # Rows far out in the tails only the Student-t explains: it gains hundreds of nats and stays.
    far = torch.cat([x, torch.tensor([[40.0, -40.0], [-60.0, 30.0]], dtype=D)])
    with torch.no_grad():
        far_log_probs = torch.stack([p.log_prob(far) for p in (shifted, mixture, student)], dim=1)
    assert _gain(far_log_probs, optional) > 100
    assert stacking_weights(far_log_probs, prior=1.0, optional=optional, min_gain=3.0)[2] > 0
    with pytest.raises(ValueError, match="must not be optional"):
        stacking_weights(log_probs, optional=torch.ones(3, dtype=torch.bool), min_gain=3.0)
