"""Train zuko flows (NSF, MAF) with the same budget as skflow's defaults.

zuko (https://github.com/probabilists/zuko) is an optional dependency
(``pip install skflow[benchmark]``); :func:`zuko_available` says whether it
can be imported, and the benchmark skips these methods cleanly otherwise.

"Same budget" means what ``skflow``'s estimators do by default: data
standardised with training statistics (undone through the log-determinant,
so log-likelihoods are in the original units), float32 training, AdamW at a
peak learning rate of 1e-3 annealed to zero by a cosine schedule over at
most 500 epochs, mini-batches of ``min(256, max(32, n // 8))`` (skflow's
``batch_size="auto"``), gradient norm clipped at
10, early stopping on a 10% validation split with a patience of 20 epochs
and a tolerance of 1e-4 nats, best state restored; scoring and sampling in
float64.  zuko's own architecture defaults are kept (3 transforms,
hidden layers (64, 64), NSF with 8 bins).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

__all__ = ["ZukoDensity", "zuko_available"]

MAX_GRAD_NORM = 10.0


def zuko_available() -> bool:
    try:
        import zuko  # noqa: F401
    except ImportError:
        return False
    return True


class ZukoDensity:
    """Minimal density-estimator wrapper around a ``zuko.flows`` flow.

    Parameters
    ----------
    flow : {"NSF", "MAF"}
        Which zuko flow to build.
    max_iter, learning_rate, validation_fraction, n_iter_no_change, tol
        The training budget (defaults: skflow's).
    random_state : int
        Seeds initialisation, split and batch order.
    **flow_kwargs
        Passed to the zuko flow constructor.
    """

    def __init__(
        self,
        flow="NSF",
        *,
        max_iter=500,
        learning_rate=1e-3,
        validation_fraction=0.1,
        n_iter_no_change=20,
        tol=1e-4,
        random_state=0,
        **flow_kwargs,
    ):
        self.flow = flow
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.flow_kwargs = flow_kwargs

    def fit(self, X):
        import zuko

        X = np.asarray(X, dtype=np.float64)
        n, d = X.shape
        self.loc_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        Z = (X - self.loc_) / self.scale_
        rng = np.random.RandomState(self.random_state)
        order = rng.permutation(n)
        n_val = int(round(self.validation_fraction * n))
        val, train = order[:n_val], order[n_val:]
        x = torch.tensor(Z[train], dtype=torch.float32)
        x_val = torch.tensor(Z[val], dtype=torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.randint(2**31 - 1)))
            self.model_ = getattr(zuko.flows, self.flow)(d, **self.flow_kwargs).float()
        generator = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
        self.loss_curve_, self.validation_scores_ = self._train(x, x_val, generator)
        self.n_iter_ = len(self.loss_curve_)
        self.model_ = self.model_.double().eval()
        self.n_parameters_ = sum(p.numel() for p in self.model_.parameters() if p.requires_grad)
        return self

    def _train(self, x, x_val, generator):
        model = self.model_
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=0.0)
        # skflow's batch_size="auto": several steps per epoch on small data sets.
        batch = min(256, max(32, x.shape[0] // 8), x.shape[0])
        n_batches = math.ceil(x.shape[0] / batch)
        total_steps, step = self.max_iter * n_batches, 0
        best, best_state, no_change = -math.inf, copy.deepcopy(model.state_dict()), 0
        losses, scores = [], []
        for _ in range(self.max_iter):
            model.train()
            perm = torch.randperm(x.shape[0], generator=generator)
            total = 0.0
            for b in range(n_batches):
                xb = x[perm[b * batch : (b + 1) * batch]]
                loss = -model().log_prob(xb).mean()
                if not torch.isfinite(loss):
                    model.load_state_dict(best_state)
                    return losses, scores
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
                optimizer.step()
                step += 1
                for group in optimizer.param_groups:
                    group["lr"] = 0.5 * self.learning_rate * (1 + math.cos(math.pi * step / total_steps))
                total += loss.item() * xb.shape[0]
            losses.append(total / x.shape[0])
            model.eval()
            with torch.no_grad():
                score = model().log_prob(x_val).mean().item()
            scores.append(score)
            if score > best:
                improved = score > best + self.tol
                best, best_state = score, copy.deepcopy(model.state_dict())
                no_change = 0 if improved else no_change + 1
            else:
                no_change += 1
            if no_change >= self.n_iter_no_change:
                break
        model.load_state_dict(best_state)
        return losses, scores

    def score_samples(self, X):
        Z = (np.asarray(X, dtype=np.float64) - self.loc_) / self.scale_
        with torch.no_grad():
            log_prob = self.model_().log_prob(torch.tensor(Z)).numpy()
        return log_prob - np.log(self.scale_).sum()

    def sample(self, n_samples=1, random_state=None):
        seed = np.random.RandomState(random_state).randint(2**31 - 1)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(int(seed))
            Z = self.model_().sample((n_samples,)).numpy()
        return Z * self.scale_ + self.loc_
