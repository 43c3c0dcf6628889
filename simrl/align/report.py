"""Figures of alignment runs: replayed trajectories overlaid on the logged ones."""

from __future__ import annotations

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
