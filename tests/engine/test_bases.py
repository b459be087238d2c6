"""Base distributions: exact log-densities, densities that integrate to 1, samples that agree."""

import copy
import math

import numpy as np
import pytest
import torch

from skflow.engine import ActNorm, Compose, Flow, Trainer, TrainingStatus
from skflow.engine.bases import (
    GaussianMixtureBase,
    KernelDensityBase,
    MultivariateStudentTBase,
    StandardNormal,
    StudentTBase,
)

D = torch.float64


def _mixture(seed=0, d=2, k=3):
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.randn(k, d, generator=g, dtype=D)
    a = torch.randn(k, d, d, generator=g, dtype=D)
    cov = a @ a.transpose(1, 2) + 0.3 * torch.eye(d, dtype=D)
    weights = torch.rand(k, generator=g, dtype=D) + 0.2
    return GaussianMixtureBase(weights, means, cov).double()


def _student(d=2):
    base = StudentTBase(d).double()
    with torch.no_grad():
        base.loc.copy_(torch.tensor([0.5, -1.0][:d], dtype=D))
        base.log_scale.copy_(torch.tensor([0.2, -0.3][:d], dtype=D))
        base.raw_df.copy_(torch.tensor([StudentTBase._raw(3.0), StudentTBase._raw(8.0)][:d], dtype=D))
    return base


def _kernel_density():
    points = 2 * torch.randn(40, 2, generator=torch.Generator().manual_seed(5), dtype=D) + 0.5
    return KernelDensityBase(points, 0.6).double()


def _multivariate_t(df=2.5):
    tril = torch.tensor([[1.2, 0.0], [-0.6, 0.7]], dtype=D)
    return MultivariateStudentTBase(torch.tensor([0.4, -0.8], dtype=D), tril, df)


BASES = {
    "normal": lambda: StandardNormal(2).double(),
    "mixture": _mixture,
    "student_t": _student,
    "kernel_density": _kernel_density,
    "multivariate_t": _multivariate_t,
}


def _grid(lim, n):
    t = torch.linspace(-lim, lim, n, dtype=D)
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=1), (t[1] - t[0]).item()


@pytest.mark.parametrize("name", BASES)
def test_integrates_to_one_on_a_2d_grid(name):
    base = BASES[name]()
    lim = 60.0 if "_t" in name else 15.0
    grid, step = _grid(lim, 1201)
    with torch.no_grad():
        mass = torch.exp(base.log_prob(grid)).sum().item() * step * step
    # Student-t with 3 degrees of freedom leaves ~1e-4 of its mass beyond 60 scale units (2.5: ~1e-3).
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_mixture_log_prob_matches_torch_distributions():
    base = _mixture(seed=3, d=3, k=4)
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=base.logits.detach()),
        torch.distributions.MultivariateNormal(base.means.detach(), scale_tril=base.scale_tril().detach()),
    )
    z = 4 * torch.randn(200, 3, generator=torch.Generator().manual_seed(1), dtype=D)
    expected = reference.log_prob(z)
    torch.testing.assert_close(base.log_prob(z).detach(), expected, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("d, k, block", [(3, 4, 64), (3, 4, 5), (5, 7, 1 << 15)])
def test_mixture_log_prob_without_gradients_is_the_same_in_row_blocks(d, k, block, monkeypatch):
    # Inference evaluates rows in blocks, in place; with gradients the whole batch at once.
    # Blocks of several rows, of one row (K d above the block size), and a single block.
    import skflow.engine.bases as bases

    monkeypatch.setattr(bases, "MIXTURE_BLOCK_ELEMENTS", block)
    base = _mixture(seed=4, d=d, k=k)
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=base.logits.detach()),
        torch.distributions.MultivariateNormal(base.means.detach(), scale_tril=base.scale_tril().detach()),
    )
    z = torch.cat([4 * torch.randn(203, d, generator=torch.Generator().manual_seed(2), dtype=D),
                   torch.full((1, d), 1e4, dtype=D)])
    with torch.no_grad():
        blocked, components = base.log_prob(z), base.component_log_prob(z)
    torch.testing.assert_close(blocked, base.log_prob(z).detach(), rtol=1e-14, atol=1e-12)
    torch.testing.assert_close(components, base.component_log_prob(z).detach(), rtol=1e-14, atol=1e-12)
    torch.testing.assert_close(blocked, reference.log_prob(z), rtol=1e-12, atol=1e-10)
    with torch.no_grad():
        blocked32 = base.float().log_prob(z.float())
    torch.testing.assert_close(blocked32.double(), reference.log_prob(z), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("d, k", [(2, 8), (5, 3), (16, 32)])
def test_tied_mixture_log_prob_without_gradients(d, k):
    # A tied mixture (one covariance, as GaussianMixture(covariance_type="tied") gives) is scored
    # without gradients from the expansion |w|^2 - 2 m_k.w + |m_k|^2 of the whitened rows.
    g = torch.Generator().manual_seed(5)
    a = torch.randn(d, d, generator=g, dtype=D)
    covariance = a @ a.T / d + 0.05 * torch.eye(d, dtype=D)
    means = 3 * torch.randn(k, d, generator=g, dtype=D) + 50.0  # far from the origin: the centring matters
    base = GaussianMixtureBase(torch.rand(k, generator=g, dtype=D) + 0.2, means, covariance.expand(k, d, d))
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=base.logits.detach()),
        torch.distributions.MultivariateNormal(base.means.detach(), scale_tril=base.scale_tril().detach()),
    )
    z = torch.cat([means[:1] + 3 * torch.randn(300, d, generator=g, dtype=D),
                   torch.full((1, d), 1e4, dtype=D), torch.full((1, d), -1e3, dtype=D)])
    expected = reference.log_prob(z)
    with torch.no_grad():
        tied = base.log_prob(z)
        components = base.component_log_prob(z)
    torch.testing.assert_close(tied, expected, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(components, base.component_log_prob(z).detach(), rtol=1e-12, atol=1e-10)
    with torch.no_grad():
        tied32 = copy.deepcopy(base).float().log_prob(z.float())
    near = slice(0, 300)
    torch.testing.assert_close(tied32[near].double(), expected[near], rtol=1e-5, atol=2e-3)
    torch.testing.assert_close(tied32.double(), expected, rtol=1e-5, atol=2e-3)


def test_student_t_log_prob_matches_torch_distributions():
    base = _student()
    reference = torch.distributions.StudentT(
        base.df.detach(), base.loc.detach(), torch.exp(base.log_scale.detach())
    )
    z = torch.tensor([[0.0, 0.0], [10.0, -30.0], [1e3, 1e4]], dtype=D)
    expected = reference.log_prob(z).sum(-1)
    torch.testing.assert_close(base.log_prob(z).detach(), expected, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("df", [1.0, 2.5, 30.0])
def test_multivariate_t_log_prob_matches_scipy(df):
    from scipy.stats import multivariate_t

    base = _multivariate_t(df)
    tril = base.scale_tril
    reference = multivariate_t(loc=base.loc.numpy(), shape=(tril @ tril.T).numpy(), df=df)
    z = torch.tensor([[0.0, 0.0], [10.0, -30.0], [1e3, 1e4], [-2.5, 0.3]], dtype=D)
    np.testing.assert_allclose(base.log_prob(z).numpy(), reference.logpdf(z.numpy()), rtol=1e-12, atol=1e-10)


def test_multivariate_t_samples_have_the_f_distributed_mahalanobis_distance():
    """In d dimensions |L^-1 (x - loc)|^2 / d is F(d, df) distributed: a Kolmogorov-Smirnov test."""
    from scipy import stats

    for df in (1.0, 4.0):
        base = _multivariate_t(df)
        x = base.sample(20_000, torch.Generator().manual_seed(1))
        white = torch.linalg.solve_triangular(base.scale_tril, (x - base.loc).T, upper=False)
        statistic = (white.square().sum(0) / 2).numpy()
        assert stats.kstest(statistic, stats.f(2, df).cdf).pvalue > 1e-3


def test_multivariate_t_rejects_invalid_parameters():
    with pytest.raises(ValueError, match="df"):
        MultivariateStudentTBase(torch.zeros(2), torch.eye(2), df=0.0)
    with pytest.raises(ValueError, match="diagonal"):
        MultivariateStudentTBase(torch.zeros(2), -torch.eye(2), df=3.0)


@pytest.mark.parametrize("name", BASES)
def test_samples_agree_with_log_prob(name):
    """Chi-square test of 100k samples binned on a grid against the integrated density."""
    base = BASES[name]()
    n = 100_000
    with torch.no_grad():
        samples = base.sample(n, torch.Generator().manual_seed(0))
    assert samples.shape == (n, 2) and samples.dtype == torch.float64
    edges = np.linspace(-8, 8, 17)
    observed, _, _ = np.histogram2d(samples[:, 0].numpy(), samples[:, 1].numpy(), bins=[edges, edges])
    # Expected counts: the density integrated over each cell by a 20 x 20 midpoint rule.
    fine = np.linspace(-8, 8, 16 * 20 + 1)
    centres = 0.5 * (fine[1:] + fine[:-1])
    xx, yy = np.meshgrid(centres, centres, indexing="ij")
    with torch.no_grad():
        density = torch.exp(base.log_prob(torch.tensor(np.stack([xx.ravel(), yy.ravel()], 1)))).numpy()
    cell = (fine[1] - fine[0]) ** 2
    expected = n * density.reshape(16, 20, 16, 20).sum(axis=(1, 3)) * cell
    keep = expected > 20
    chi2 = (((observed - expected) ** 2)[keep] / expected[keep]).sum()
    dof = keep.sum() - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof), (chi2, dof)


def test_sampling_uses_only_the_local_generator():
    state = torch.random.get_rng_state()
    for make in BASES.values():
        a = make().sample(50, torch.Generator().manual_seed(7))
        b = make().sample(50, torch.Generator().manual_seed(7))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.equal(state, torch.random.get_rng_state())


def test_student_t_data_init_recovers_heavy_tails():
    g = torch.Generator().manual_seed(0)
    t3 = torch.distributions.StudentT(torch.tensor(3.0))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        z = torch.stack([t3.sample((4000,)), torch.randn(4000, generator=g)], 1).double()
    base = StudentTBase(2).double()
    base.data_init(z)
    df = base.df.detach()
    assert 2.0 < df[0] < 5.0 and df[1] > 15.0


def test_flow_with_identity_layers_is_its_base():
    base = _mixture()
    flow = Flow(Compose([ActNorm(2)]), base).double()
    x = torch.randn(20, 2, dtype=D)
    torch.testing.assert_close(flow.log_prob(x), base.log_prob(x))
    torch.testing.assert_close(flow.from_latent(flow.to_latent(x)), x, rtol=0, atol=1e-12)


def test_bases_have_finite_gradients_far_away():
    for make in (_mixture, _student):
        base = make()
        z = torch.tensor([[1e4, -1e4], [0.0, 0.0]], dtype=D)
        base.log_prob(z).sum().backward()
        for p in base.parameters():
            assert torch.isfinite(p.grad).all()


def test_trainer_scores_the_starting_model_and_keeps_it_when_training_hurts():
    """Epoch 0 is scored: a perfect start is never replaced by worse epochs."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 2, generator=g, dtype=D)
    flow = Flow(ActNorm(2), 2).double()
    start = {k: v.clone() for k, v in flow.state_dict().items()}
    # A huge learning rate: every epoch is worse than the identity start on N(0, I) data.
    x_val = torch.randn(256, 2, generator=g, dtype=D)
    result = Trainer(flow, learning_rate=5.0).fit(
        x, x_val=x_val, max_iter=6, batch_size=64, n_iter_no_change=3, generator=g
    )
    assert result.best_epoch == 0 and result.status is TrainingStatus.CONVERGED
    assert result.initial_score == result.best_score > max(result.validation_scores)
    for k, v in flow.state_dict().items():
        torch.testing.assert_close(v, start[k], rtol=0, atol=0)


def test_trainer_keeps_its_optimiser_state_across_calls():
    flow = Flow(ActNorm(2), 2).double()
    trainer = Trainer(flow, learning_rate=1e-2)
    x = 3 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=D) + 1
    trainer.fit(x, max_iter=2, batch_size=32, keep_best=False)
    steps = trainer.optimizer.steps
    moments = [m.clone() for m in trainer.optimizer.exp_avg]
    trainer.fit(x, max_iter=1, batch_size=32, keep_best=False)
    assert trainer.optimizer.steps == steps + 2 > 2
    assert all(not torch.equal(a, b) for a, b in zip(moments, trainer.optimizer.exp_avg))


def _adamw_and_torch_adamw(seed, weight_decay):
    """Three parameters, their copies, skflow's AdamW on the first and torch's on the copies."""
    from skflow.engine.optim import AdamW

    g = torch.Generator().manual_seed(seed)
    ours = [torch.nn.Parameter(torch.randn(5, 3, generator=g, dtype=D)) for _ in range(2)]
    ours.append(torch.nn.Parameter(torch.randn(4, generator=g, dtype=D)))
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    return (ours, theirs, AdamW(ours, lr=0.01, weight_decay=weight_decay),
            torch.optim.AdamW(theirs, lr=0.01, weight_decay=weight_decay))


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_matches_torch_adamw(weight_decay):
    # The multi-tensor update is torch.optim.AdamW's maths, step for step.
    ours, theirs, opt_ours, opt_theirs = _adamw_and_torch_adamw(0, weight_decay)
    for step in range(30):
        for params, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            sum((p**3).sum() for p in params).backward()
            opt.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # A parameter without a gradient in a step is left as it is.
    frozen = ours[2].detach().clone()
    opt_ours.zero_grad()
    sum((p**3).sum() for p in ours[:2]).backward()
    opt_ours.step()
    assert torch.equal(ours[2], frozen) and not torch.equal(ours[0], theirs[0])


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_on_flat_buffers_matches_torch_adamw(weight_decay):
    # Bound, parameters and gradients are views of flat buffers; the step, the clip and the
    # parameters' values are those of torch's AdamW and clip_grad_norm_.
    ours, theirs, opt_ours, opt_theirs = _adamw_and_torch_adamw(1, weight_decay)
    opt_ours.bind()
    assert len({p.untyped_storage().data_ptr() for p in ours}) == 1
    seen = []
    for step in range(30):
        opt_ours.zero_grad(set_to_none=False)
        opt_theirs.zero_grad()
        norms = []
        for params, clip in ((ours, opt_ours.clip_grad_norm_),
                             (theirs, lambda m: torch.nn.utils.clip_grad_norm_(theirs, m))):
            sum((p**3).sum() for p in params).backward()
            norms.append(clip(48.5))  # clips in some steps, not in others
        torch.testing.assert_close(norms[0], norms[1], rtol=1e-12, atol=0)
        seen.append(float(norms[0]))
        assert opt_ours._flat_path()
        opt_ours.step()
        opt_theirs.step()
    assert min(seen) < 48.5 < max(seen)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    values = [p.detach().clone() for p in ours]
    opt_ours.unbind()
    assert all(p.grad is None for p in ours)
    assert all(torch.equal(p, v) for p, v in zip(ours, values))


def test_adamw_steps_per_parameter_when_a_gradient_is_replaced():
    # A gradient that is not a view of the flat buffer (here: set by hand) is not lost.
    from skflow.engine.optim import AdamW

    p = torch.nn.Parameter(torch.ones(3, dtype=D))
    opt = AdamW([p], lr=0.1)
    opt.bind()
    opt.zero_grad(set_to_none=False)
    p.grad = torch.ones(3, dtype=D)
    assert not opt._flat_path()
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((3,), 0.9, dtype=D))


@pytest.mark.parametrize("block", [50, 1, 1 << 17])
def test_kernel_density_without_gradients_is_the_same_in_row_blocks(block, monkeypatch):
    import skflow.engine.bases as bases

    monkeypatch.setattr(bases, "KERNEL_DENSITY_BLOCK_ELEMENTS", block)
    kde = _kernel_density()
    z = torch.cat([4 * torch.randn(97, 2, generator=torch.Generator().manual_seed(3), dtype=D),
                   torch.tensor([[30.0, -40.0]], dtype=D)])
    with torch.no_grad():
        blocked = kde.log_prob(z)
    torch.testing.assert_close(blocked, kde.log_prob(z).detach(), rtol=1e-13, atol=1e-11)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_floored_logsumexp_matches_torch(dtype):
    from skflow.engine.bases import _logsumexp_

    inf, nan = float("inf"), float("nan")
    big = 1e300 if dtype == torch.float64 else 1e30
    x = torch.tensor([[0.0, -1.0, -2.0], [-1e4, -2e4, -1e4 - 800.0], [-3.0, -inf, -inf],
                      [-5.0, -90.0, -200.0], [-inf, -inf, -inf], [inf, 0.0, 1.0], [nan, 0.0, 1.0],
                      [big, -big, 0.0]], dtype=dtype)
    expected = torch.logsumexp(x, dim=1)
    rtol = 1e-15 if dtype == torch.float64 else 1e-7
    got = _logsumexp_(x.clone(), torch.empty(x.shape[0], dtype=dtype))
    torch.testing.assert_close(got, expected, rtol=rtol, atol=0, equal_nan=True)
    by_column = _logsumexp_(x.T.contiguous(), torch.empty(x.shape[0], dtype=dtype), dim=0)
    torch.testing.assert_close(by_column, expected, rtol=rtol, atol=0, equal_nan=True)


def test_kernel_density_is_the_equal_weight_isotropic_mixture():
    kde = _kernel_density()
    n, d = kde.points.shape
    covariances = kde.bandwidth**2 * torch.eye(d, dtype=D).expand(n, d, d)
    mixture = GaussianMixtureBase(torch.full((n,), 1.0 / n, dtype=D), kde.points, covariances).double()
    z = torch.cat([4 * torch.randn(200, 2, generator=torch.Generator().manual_seed(2), dtype=D),
                   torch.tensor([[30.0, -40.0], [1e3, 1e3]], dtype=D)])
    with torch.no_grad():
        torch.testing.assert_close(kde.log_prob(z), mixture.log_prob(z), rtol=1e-10, atol=1e-9)
    # Far rows keep a finite log-density (the distance form does not underflow to NaN).
    assert torch.isfinite(kde.log_prob(torch.tensor([[1e6, -1e6]], dtype=D))).all()
    with pytest.raises(ValueError, match="bandwidth"):
        KernelDensityBase(kde.points, 0.0)


def test_adamw_loads_the_per_parameter_moments_of_older_pickles():
    # Before the flat buffers, the moments were lists (None for a parameter without a step yet).
    from skflow.engine.optim import AdamW

    params = [torch.nn.Parameter(torch.ones(2, 2, dtype=D)), torch.nn.Parameter(torch.ones(3, dtype=D))]
    old = {"params": params, "lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "steps": 3,
           "exp_avg": [torch.full((2, 2), 0.5, dtype=D), None],
           "exp_avg_sq": [torch.full((2, 2), 0.25, dtype=D), None]}
    opt = AdamW.__new__(AdamW)
    opt.__setstate__(old)
    torch.testing.assert_close(opt.exp_avg[0], torch.full((2, 2), 0.5, dtype=D))
    torch.testing.assert_close(opt.exp_avg_sq[1], torch.zeros(3, dtype=D))
    (params[0].sum() + params[1].sum()).backward()
    opt.step()
    assert opt.steps == 4 and not torch.equal(params[1].detach(), torch.ones(3, dtype=D))


def test_inference_blocks_only_on_the_cpu():
    from skflow.engine.bases import _block_rows

    assert _block_rows(torch.empty(1000, 3), 64) == 64
    assert _block_rows(torch.empty(1000, 3), 0) == 1
    assert _block_rows(torch.empty(1000, 3, device="meta"), 64) == 1000  # any other device: one block
