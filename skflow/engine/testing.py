"""Numerical checks of the bijection contract, shared by every test.

These are what "exact" means in skflow: a round trip recovers the input to
float64 precision, and the reported log-determinant equals the one of the
Jacobian computed by brute force with autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .transforms import Transform

__all__ = ["jacobian_log_abs_det", "assert_round_trip", "assert_log_det_matches_autograd"]


def jacobian_log_abs_det(function, x: Tensor) -> Tensor:
    """``log|det J|`` of a row-wise map at each row of ``x``, by autograd.

    Builds each row's full ``d x d`` Jacobian, so it is only meant for tests.
    """
    out = []
    for row in x:
        jac = torch.autograd.functional.jacobian(lambda r: function(r.unsqueeze(0))[0], row)
        out.append(torch.linalg.slogdet(jac.reshape(row.numel(), row.numel()))[1])
    return torch.stack(out)


def assert_round_trip(transform: Transform, x: Tensor, atol: float = 1e-10) -> None:
    """``inverse(forward(x)) == x`` and the two log-determinants cancel.

    ``atol`` is relative to the largest magnitude involved (at least 1):
    float64 round trips are exact to a relative precision.
    """
    with torch.no_grad():
        y, ladj = transform(x)
        x_back, ladj_inv = transform.inverse(y)
    assert torch.isfinite(y).all() and torch.isfinite(ladj).all()
    err = (x_back - x).abs().max().item()
    size = max(1.0, x.abs().max().item(), y.abs().max().item())
    assert err <= atol * size, f"round-trip error {err:.3e} > {atol:.1e}"
    cancel = (ladj + ladj_inv).abs().max().item()
    assert cancel <= atol * max(1.0, ladj.abs().max().item()), f"log-dets do not cancel: {cancel:.3e}"


def assert_log_det_matches_autograd(
    transform: Transform, x: Tensor, rtol: float = 1e-8, atol: float = 1e-8, inverse: bool = False
) -> None:
    """The reported log|det J| equals the autograd Jacobian's, row by row."""
    fn = transform.inverse if inverse else transform.forward
    with torch.no_grad():
        _, ladj = fn(x)
    brute = jacobian_log_abs_det(fn, x)
    torch.testing.assert_close(ladj, brute, rtol=rtol, atol=atol)
