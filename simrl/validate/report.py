"""The ranking report: ``ranking.json``, two PNG plots and a self-contained ``index.html``."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from simrl.core.config import to_jsonable
from simrl.validate.ranking import RankConfig, Ranking, ood_table

_STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:3px 8px}")
JSON_FILE, SCATTER_FILE, BARS_FILE, HTML_FILE = "ranking.json", "sim_vs_ood.png", "ranking.png", "index.html"


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def to_json(ranking: Ranking, cfg: RankConfig, metrics: dict[str, dict[str, float]] | None = None) -> dict:
    """The content of ``ranking.json``."""
    rows = []
    for i, (path, name) in enumerate(zip(ranking.checkpoints, ranking.names)):
        rows.append({
            "checkpoint": path, "name": name, "rank": int(ranking.rank[i]),
            "vsdr": float(ranking.scores["vsdr"][i]), "sim_score": float(ranking.sim[i]),
            "ood": {d: dataclasses.asdict(s) for d, s in ranking.ood[i].items()},
            "scores": {m: float(s[i]) for m, s in ranking.scores.items()}})
    out = {"checkpoints": sorted(rows, key=lambda r: r["rank"]),
           "real_logs": {"files": len(ranking.real.paths), "steps": len(ranking.real),
                         "truncated": ranking.real.truncated},
           "config": to_jsonable(cfg), "timings_s": ranking.timings,
           "formula": "VSDR = z(sim) - lam * mean_d z(ood_d); z = clipped median/MAD standardization "
                      "across the pool (or ranks onto [-1, 1] with normalize=rank)"}
    if metrics is not None:
        out["metrics"] = {m: {k: _num(v) for k, v in row.items()} for m, row in metrics.items()}
    return out


def plot(ranking: Ranking, cfg: RankConfig, out: Path) -> list[Path]:
    """Scatter of simulation score against mean OOD z-score, coloured by rank, and the ranking
    bar chart of VSDR scores."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(ranking.names)
    ood_z = -np.mean([ranking.scores[f"ood:{d}"] for d in ood_table(ranking.ood, cfg.vsdr.aggregate)], axis=0)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    points = ax.scatter(ranking.sim, ood_z, c=ranking.rank, cmap="viridis_r", s=60, vmin=1, vmax=max(n, 2))
    for x, y, name, r in zip(ranking.sim, ood_z, ranking.names, ranking.rank):
        ax.annotate(f"{r}. {name}", (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    fig.colorbar(points, ax=ax, label="VSDR rank (1 = best)")
    ax.set_xlabel(f"simulation score ({cfg.sim.metric}, held-out randomization)")
    ax.set_ylabel(f"OOD on real logs (mean z of {cfg.vsdr.aggregate} scores; higher = more OOD)")
    ax.set_title("Validate on sim, detect on real")
    fig.tight_layout()
    scatter = out / SCATTER_FILE
    fig.savefig(scatter, dpi=110)
    plt.close(fig)

    order = np.argsort(ranking.rank)
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.32 * n))
    ax.barh(range(n), ranking.scores["vsdr"][order], color="tab:blue")
    ax.set_yticks(range(n), [f"{ranking.rank[i]}. {ranking.names[i]}" for i in order], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"VSDR score (lambda = {cfg.vsdr.lam:g})")
    fig.tight_layout()
    bars = out / BARS_FILE
    fig.savefig(bars, dpi=110)
    plt.close(fig)
    return [scatter, bars]


def _cell(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(data: dict, images: list[Path], out: Path) -> Path:
    """A single page with the ranking table, metrics (if any) and the plots inlined as base64."""
    detectors = list(data["checkpoints"][0]["ood"]) if data["checkpoints"] else []
    agg = data["config"]["vsdr"]["aggregate"]
    rows = [[c["rank"], c["name"], c["vsdr"], c["sim_score"], *(c["ood"][d][agg] for d in detectors)]
            for c in data["checkpoints"]]
    parts = [f"<h1>Checkpoint ranking</h1><p>{data['real_logs']['files']} real logs, "
             f"{data['real_logs']['steps']:,} steps; VSDR: <code>{html.escape(data['formula'])}</code></p>",
             _table(["rank", "checkpoint", "VSDR", "sim score", *(f"OOD {d} ({agg})" for d in detectors)],
                    rows)]
    if data["real_logs"]["truncated"]:
        parts.append(f"<p>Truncated logs (read up to their last whole chunk): "
                     f"{html.escape(', '.join(data['real_logs']['truncated']))}</p>")
    if "metrics" in data:
        parts.append("<h2>Against measured real returns</h2>" + _table(
            ["method", "Spearman", "Kendall", "regret@1", "top-3 hits"],
            [[m, *(float("nan") if v is None else v for v in row.values())]
             for m, row in data["metrics"].items()]))
    for img in images:
        b64 = base64.b64encode(img.read_bytes()).decode()
        parts.append(f'<p><img alt="{img.name}" src="data:image/png;base64,{b64}"></p>')
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>simrl ranking</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = out / HTML_FILE
    path.write_text(page)
    return path


def write_report(ranking: Ranking, cfg: RankConfig, out: str | Path,
                 metrics: dict[str, dict[str, float]] | None = None) -> dict[str, Path]:
    """Writes ``ranking.json``, the PNG plots and ``index.html`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = to_json(ranking, cfg, metrics)
    (out / JSON_FILE).write_text(json.dumps(data, indent=2, allow_nan=False))
    images = plot(ranking, cfg, out)
    page = write_html(data, images, out)
    return {"json": out / JSON_FILE, "scatter": images[0], "bars": images[1], "html": page}


def print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    """A table of ranking quality per method (Spearman, Kendall, regret@1, top-3 hits)."""
    print(f"{'method':24s} {'Spearman':>9s} {'Kendall':>8s} {'regret@1':>9s} {'top-3':>6s}")
    for method, m in metrics.items():
        print(f"{method:24s} {m['spearman']:9.3f} {m['kendall']:8.3f} {m['regret@1']:9.3g} "
              f"{m['top3_hits']:6d}")
