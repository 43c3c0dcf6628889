"""Progress display: lines, not carriage returns, when the output is not a terminal."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from simrl.core.progress import LineProgress, progress

REPO = Path(__file__).resolve().parents[1]


def test_not_a_terminal_gives_periodic_lines():
    out = io.StringIO()
    bar = progress(1000, "ppo hopper", unit="step", file=out, interval_s=0.0)
    assert isinstance(bar, LineProgress)
    for _ in range(4):
        bar.update(250)
        bar.set_postfix({"ret": "12.5"}, refresh=False)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 5  # one per update (interval 0) and one at close
    assert lines[-1].startswith("ppo hopper: 1k/1k step (100%)") and "ret=12.5" in lines[-1]


def test_lines_are_rate_limited():
    out = io.StringIO()
    bar = progress(10**6, "x", file=out, interval_s=3600.0)
    for _ in range(10_000):
        bar.update(1)
    bar.close()
    assert len(out.getvalue().splitlines()) == 1  # only the closing line


def test_disabled_prints_nothing():
    out = io.StringIO()
    bar = progress(10, "x", file=out, disable=True, interval_s=0.0)
    bar.update(10)
    bar.close()
    assert out.getvalue() == ""


def test_redirected_training_log_has_no_carriage_returns(tmp_path):
    """A short ``simrl train`` with its output redirected to a file (not a terminal)."""
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-m", "simrl.cli", "train", "--task", "hopper",
                               "--steps", "4096", "--num-envs", "16", "--out", str(tmp_path / "run")],
                              stdout=f, stderr=subprocess.STDOUT, cwd=REPO, timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text
    assert "ppo hopper: 4.1k/4.1k step (100%)" in text
