"""Checkpoint validation before deployment ("Validate on Sim, Detect on Real", VSDR).

For every checkpoint of a pool:

* **simulation score** (:mod:`~simrl.validate.simeval`): return or success rate under held-out
  randomization (families it did not train on, wider ranges);
* **OOD scores** (:mod:`~simrl.validate.ood`): detectors (:mod:`~simrl.validate.detectors`:
  k-means-grouped Mahalanobis with Ledoit-Wolf shrinkage, kNN distance, GMM negative
  log-likelihood, world-model disagreement) fitted on the checkpoint's own simulated rollouts
  under its training randomization, applied to its features (:mod:`~simrl.validate.features`:
  normalized observation, last hidden layer, action) on held-out real logs, calibrated on
  held-out simulated steps;
* **VSDR** (:mod:`~simrl.validate.score`)::

      VSDR = z(sim) - lambda * mean_d z(ood_d)     (z: median/MAD across the pool, clipped to +-3; lambda = 1)

>>> from simrl.validate import RankConfig, rank_checkpoints, write_report
>>> ranking = rank_checkpoints(["runs/a/final", "runs/b/final"], "logs/real", RankConfig())
>>> write_report(ranking, RankConfig(), "reports/rank")

:mod:`~simrl.validate.record` writes rollouts of any env and policy as real logs.
"""

from simrl.validate.detectors import (GMM, KNN, DisagreementModel, Mahalanobis,
                                      WorldModelDisagreement, kmeans, ledoit_wolf)
from simrl.validate.metrics import kendall, ranking_metrics, regret_at_1, spearman, top_k_hits
from simrl.validate.ood import OODConfig, ood_scores, reference_rollouts
from simrl.validate.ranking import RankConfig, Ranking, match_truth, rank_checkpoints
from simrl.validate.record import record
from simrl.validate.report import write_report
from simrl.validate.score import VSDRConfig, combine
from simrl.validate.simeval import SimEvalConfig, sim_score

__all__ = ["GMM", "KNN", "Mahalanobis", "WorldModelDisagreement", "DisagreementModel", "kmeans",
           "ledoit_wolf",
           "spearman", "kendall", "regret_at_1", "top_k_hits", "ranking_metrics", "OODConfig", "ood_scores",
           "reference_rollouts", "RankConfig", "Ranking", "rank_checkpoints", "match_truth", "record",
           "write_report", "VSDRConfig", "combine", "SimEvalConfig", "sim_score"]
