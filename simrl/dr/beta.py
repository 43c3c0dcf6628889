"""Beta-distribution formulas as functions of ``(a, b)`` tensors, so the DORAEMON optimizer gets
exact autograd gradients. The distribution itself (sampling, checkpoints, diagnostics) is
:class:`envs.distributions.BetaDistribution`; these are the same closed forms in torch.
"""

from __future__ import annotations

import torch

from envs.distributions import BetaDistribution

__all__ = ["BetaDistribution", "beta_log_prob_torch", "beta_entropy_torch", "beta_kl_torch"]


# --------------------------------------------------------------------------------- torch forms
def _betaln_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def beta_log_prob_torch(z: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Standardized log-density ``sum_i log Beta(z_i; a_i, b_i)`` for ``z`` (n, k) in [0, 1].

    The ``-log(high - low)`` term is omitted: it does not depend on ``(a, b)`` and cancels in
    importance weights. Boundary points are handled with ``xlogy``/``xlog1py`` (no nan).
    """
    lp = (torch.special.xlogy(a - 1.0, z) + torch.special.xlog1py(b - 1.0, -z)
          - _betaln_torch(a, b))
    return lp.sum(dim=-1)


def beta_entropy_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Entropy of Beta(a, b) on [0, 1], per element (add ``log(high - low)`` for the rescaled one)."""
    return (_betaln_torch(a, b) - (a - 1) * torch.digamma(a) - (b - 1) * torch.digamma(b)
            + (a + b - 2) * torch.digamma(a + b))


def beta_kl_torch(a1: torch.Tensor, b1: torch.Tensor, a2: torch.Tensor,
                  b2: torch.Tensor) -> torch.Tensor:
    """KL(Beta(a1, b1) || Beta(a2, b2)), per element; differentiable in all four arguments."""
    return (_betaln_torch(a2, b2) - _betaln_torch(a1, b1) + (a1 - a2) * torch.digamma(a1)
            + (b1 - b2) * torch.digamma(b1) + (a2 - a1 + b2 - b1) * torch.digamma(a1 + b1))
