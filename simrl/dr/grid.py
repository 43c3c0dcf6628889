"""Success over a 2-D grid of dynamics values (the DORAEMON paper's measure of "solving the task
across the widest range of dynamics parameters").

Every grid point runs ``episodes`` episodes with its two parameter values fixed and every other
randomized parameter at its nominal value. All points run as one batch: world ``i`` gets point
``i mod G``. A point is *solved* when its success rate reaches ``solved_threshold``; the solved
fraction is the share of solved points.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from envs.batched import BatchedEnv
from envs.randomization import make_ranges


class GridRows:
    """A discrete distribution over given parameter vectors; ``sample(n)`` cycles through them
    in order, so the n worlds of a batched env cover the grid evenly."""

    def __init__(self, names: Sequence[str], rows: np.ndarray):
        self.names = tuple(names)
        self.rows = np.asarray(rows, dtype=np.float64)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.rows[np.arange(n) % len(self.rows)]

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        hit = (x[:, None, :] == self.rows[None]).all(-1).any(-1)
        return np.where(hit, -np.log(len(self.rows)), -np.inf)

    def entropy(self) -> float:
        return float(np.log(len(np.unique(self.rows, axis=0))))


@dataclass
class GridResult:
    params: list[str]
    values_a: list[float]
    values_b: list[float]
    success: list[list[float]]          # [i_a][i_b] success rate
    mean_return: list[list[float]]
    episodes_per_point: int
    solved_threshold: float
    solved_fraction: float


def parse_grid(text: str, ranges: dict[str, tuple[float, float]]) -> list[tuple[str, float, float]]:
    """``"mass:torso,friction"`` or ``"mass:torso=0.3:2,friction=0.2:2"`` -> [(name, lo, hi)] x 2."""
    out = []
    for part in text.split(","):
        name, _, rng = part.partition("=")
        name = name.strip()
        if rng:
            lo, hi = (float(v) for v in rng.split(":"))
        elif name in ranges:
            lo, hi = ranges[name][:2]
        else:
            raise ValueError(f"--grid: no range for {name!r}; give it as {name}=LOW:HIGH "
                             f"(task ranges: {', '.join(ranges) or 'none'})")
        out.append((name, float(lo), float(hi)))
    if len(out) != 2:
        raise ValueError(f"--grid takes two parameters, got {len(out)}: {text!r}")
    return out


def grid_eval(policy: Callable[[Any], Any], task: Any, grid: list[tuple[str, float, float]],
              points: int = 10, episodes: int = 4, solved_threshold: float = 0.5,
              seed: int = 0) -> GridResult:
    """Runs the grid; ``policy`` maps an observation tensor to an action tensor."""
    import torch


    (name_a, lo_a, hi_a), (name_b, lo_b, hi_b) = grid
    va, vb = np.linspace(lo_a, hi_a, points), np.linspace(lo_b, hi_b, points)
    ranges = make_ranges({name_a: (lo_a, hi_a), name_b: (lo_b, hi_b)}, task.model)
    rows = np.array([(a, b) for a in va for b in vb])
    env = BatchedEnv(task, len(rows) * episodes, seed=seed, autoreset=False,
                     dr={r.name: (r.low, r.high, r.nominal) for r in ranges})
    env.set_distribution(GridRows(env.param_names, rows))
    n = env.num_envs
    success, returns = np.zeros(n, dtype=bool), np.zeros(n)
    finished = np.zeros(n, dtype=bool)
    obs = env.reset()
    with torch.inference_mode():
        while not finished.all():
            obs, _, _, _, info = env.step(policy(obs))
            batch = info.get("episodes")
            if batch is not None:
                new = ~finished[batch.env_ids]
                ids = batch.env_ids[new]
                success[ids], returns[ids] = batch.success[new], batch.returns[new]
                finished[ids] = True
    env.close()
    point = np.arange(n) % len(rows)
    rate = np.bincount(point, weights=success, minlength=len(rows)) / episodes
    mean_ret = np.bincount(point, weights=returns, minlength=len(rows)) / episodes
    return GridResult([name_a, name_b], va.tolist(), vb.tolist(),
                      rate.reshape(points, points).tolist(), mean_ret.reshape(points, points).tolist(),
                      episodes, solved_threshold, float(np.mean(rate >= solved_threshold)))


def plot_grid(result: GridResult, path: str | Path, title: str = "") -> None:
    """Heatmap of success over the grid (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.4, 4.6), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    a, b = np.asarray(result.values_a), np.asarray(result.values_b)
    im = ax.imshow(np.asarray(result.success).T, origin="lower", aspect="auto", vmin=0, vmax=1,
                   cmap="viridis", extent=(a[0], a[-1], b[0], b[-1]))
    fig.colorbar(im, ax=ax, label="success rate")
    ax.set_xlabel(result.params[0])
    ax.set_ylabel(result.params[1])
    ax.set_title(f"{title} solved {result.solved_fraction:.0%}".strip())
    fig.savefig(str(path), dpi=120)


def write_grid(result: GridResult, json_path: str | Path, png_path: str | Path | None, title: str = "") -> None:
    Path(json_path).write_text(json.dumps(asdict(result), indent=2))
    if png_path is not None:
        plot_grid(result, png_path, title)
