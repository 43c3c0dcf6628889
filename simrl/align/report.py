"""Reports of alignment runs: replayed trajectories overlaid on the logged ones, training
curves, and ``report.html`` around them."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np

from simrl.align.data import LogWindows


def plot_replay(path: Path, windows: LogWindows, sim: dict[str, np.ndarray], labels: Sequence[str],
                fields: Sequence[str], columns: int = 3) -> Path:
    """A grid of held-out windows (columns) x fields (rows): the logged element of largest
    variance and its replays under each parameter vector (``sim[field]``: (n, W, H, k))."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(fields)[:3]
    cols = min(columns, len(windows))
    fig, axes = plt.subplots(len(rows), cols, figsize=(4 * cols, 2.6 * len(rows)), squeeze=False)
    steps = np.arange(1, windows.steps + 1)
    for r, f in enumerate(rows):
        logged = windows.targets[f]
        elem = int(np.argmax(logged.reshape(-1, logged.shape[-1]).var(axis=0)))
        for c in range(cols):
            ax = axes[r][c]
            ax.plot(steps, logged[c, :, elem], "k.-", label="logged")
            for j, label in enumerate(labels):
                ax.plot(steps, sim[f][j, c, :, elem], label=label)
            src, start = windows.source[c]
            ax.set_title(f"{Path(src).name} @ {start}: {f}[{elem}]", fontsize=8)
            if r == len(rows) - 1:
                ax.set_xlabel("control step")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_curves(path: Path, curves: dict[str, tuple[list[dict[str, float]], str, str]]) -> Path:
    """One panel per curve: ``title -> (points, x key, y key)``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {k: v for k, v in curves.items() if v[0]}
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(4.5 * max(1, len(shown)), 3.2), squeeze=False)
    for ax, (title, (points, x, y)) in zip(axes[0], shown.items()):
        ax.plot([p[x] for p in points], [p.get(y, float("nan")) for p in points], ".-")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def write_html(path: Path, report: dict, images: Sequence[str]) -> Path:
    """``report.html``: the run's headline numbers (parameters vs truth, held-out prediction
    error before and after, returns on the proxy) and its figures."""
    rows = []
    if "estimate" in report:
        truth = report.get("truth", {})
        rows.append("<h2>Parameters</h2><table><tr><th>parameter</th><th>nominal</th><th>estimate</th>"
                    "<th>std</th><th>truth</th></tr>" + "".join(
                        f"<tr><td>{_cell(n)}</td><td>{_cell(report['nominal'][n])}</td>"
                        f"<td>{_cell(report['estimate'][n])}</td>"
                        f"<td>{_cell(report.get('std_curvature', {}).get(n))}</td>"
                        f"<td>{_cell(truth.get(n, '-'))}</td></tr>" for n in report["params"]) + "</table>")
    err = report.get("heldout_error", {})
    if err:
        rows.append("<h2>Held-out open-loop prediction error (normalized)</h2><table><tr><th></th>"
                    + "".join(f"<th>{_cell(k)}</th>" for k in err if k != "per_field") + "</tr><tr><td>all fields</td>"
                    + "".join(f"<td>{_cell(v)}</td>" for k, v in err.items() if k != "per_field") + "</tr>"
                    + "".join(f"<tr><td>{_cell(f)}</td>" + "".join(f"<td>{_cell(x)}</td>" for x in v.values()) + "</tr>"
                              for f, v in err.get("per_field", {}).items()) + "</table>")
    proxy = report.get("proxy_return")
    if proxy:
        rows.append("<h2>Return on the proxy</h2><table><tr><th>policy</th><th>mean</th><th>95% CI</th></tr>"
                    + "".join(f"<tr><td>{_cell(k)}</td><td>{_cell(v['mean_return'])}</td><td>{_cell(v['ci95'])}</td></tr>"
                              for k, v in proxy.items()) + "</table>")
    figs = "".join(f'<h2>{html.escape(i)}</h2><img src="{html.escape(i)}">' for i in images)
    title = f"simrl align --method {report.get('method')} ({report.get('task')})"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:3px 8px}"
                    "table{border-collapse:collapse}</style></head><body>"
                    f"<h1>{html.escape(title)}</h1><p>logs: {len(report.get('logs', []))} files, "
                    f"{_cell(report.get('log_seconds', 0.0))} s of robot time</p>{''.join(rows)}{figs}</body></html>")
    return path
