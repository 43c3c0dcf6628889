"""DORAEMON domain randomization (Tiboni et al., "Domain Randomization via Entropy
Maximization", ICLR 2024): a Beta distribution family and its entropy-maximizing update."""

from simrl.dr.beta import (BetaDistribution, beta_entropy_torch, beta_kl_torch,
                           beta_log_prob_torch)
from simrl.dr.doraemon import (Doraemon, DoraemonConfig, UpdateResult,
                               importance_success_estimate, plot_history)

__all__ = [
    "BetaDistribution",
    "Doraemon",
    "DoraemonConfig",
    "UpdateResult",
    "beta_entropy_torch",
    "beta_kl_torch",
    "beta_log_prob_torch",
    "importance_success_estimate",
    "plot_history",
]
