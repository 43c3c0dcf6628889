"""``simrl quickstart`` end to end on a tiny budget: every stage leaves its files behind."""

from __future__ import annotations

import json

from simrl.cli import main
from simrl.core.logs import read_log


def test_quickstart_runs_the_whole_loop(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--steps", "4096", "--num-envs", "8", "--out", str(out)]) == 0
    for dr in ("none", "uniform", "doraemon"):
        assert (out / "runs" / dr / "final" / "spec.json").exists()
    assert len(list((out / "real_logs").glob("*.mcap"))) == 3
    ranking = json.loads((out / "rank" / "ranking.json").read_text())
    assert sorted(c["rank"] for c in ranking["checkpoints"]) == list(range(1, 7))
    assert (out / "rank" / "index.html").exists() and (out / "rank" / "ranking.png").exists()
    deployed = read_log(out / "deploy.mcap")
    assert len(deployed.action) > 0 and deployed.meta.task == "hopper"
    aligned = json.loads((out / "align" / "report.json").read_text())
    assert set(aligned["proxy_return"]) == {"original", "fine-tuned"}
    assert (out / "align" / "final" / "spec.json").exists()
    text = capsys.readouterr().out
    assert "quickstart finished" in text
    # whether DORAEMON widened, and why not when it did not
    assert any(line.startswith(("DORAEMON widened", "DORAEMON did not widen", "DORAEMON made no update"))
               for line in text.splitlines())
