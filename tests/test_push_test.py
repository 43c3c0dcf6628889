"""The push test pushes for real: a standing Go1 survives no push and falls under a big one."""

from __future__ import annotations

import json

import numpy as np

from simrl.robust.push_test import PushTestConfig, push_test, write_results


def test_stand_controller_push_curve(tmp_path):
    stand = lambda obs: np.zeros((obs.shape[0], 12))  # noqa: E731
    cfg = PushTestConfig(magnitudes=(0.0, 250.0), directions=4, repeats=1, settle_s=0.2,
                         recover_s=1.0, command=(0.0, 0.0, 0.0))
    result = push_test(stand, "go1-velocity", cfg)
    assert result.success_rate == [1.0, 0.0]
    assert len(result.success_by_direction[0]) == 4 and result.trials == 4
    assert result.ci95[0][0] > 0.4 and result.ci95[0][1] == 1.0 and result.ci95[1][0] == 0.0
    write_results({"stand": result}, tmp_path / "push.json", tmp_path / "push.png")
    assert json.loads((tmp_path / "push.json").read_text())["stand"]["success_rate"] == [1.0, 0.0]
    assert (tmp_path / "push.png").stat().st_size > 1000
