"""Training runs: the run configuration, the :class:`Trainer` base every algorithm builds on,
and :func:`make_trainer` (the trainer of the configured algorithm, looked up in
:data:`simrl.algos.ALGORITHMS`). ``simrl train`` (:mod:`simrl.cli.train`) is the command.

A run directory holds ``config.json`` (the resolved configuration: every field of every
section), ``tb/`` (TensorBoard events), ``checkpoints/step_XXXXXXXXX/`` and ``final/``. Each
checkpoint is a deployable :mod:`policies` checkpoint plus ``training_state.pt`` (optimizer,
critic, normalizers, learning rate, step counter, RNG states) that ``--resume`` continues from.
Resuming is reproducible (the same checkpoint always continues the same way), but the episodes
running at the checkpoint start over, so it is not bit-identical to an uninterrupted run.

Algorithms plug in through :class:`Trainer`'s hooks: ``on_episodes`` sees every batch of
finished episodes (DORAEMON updates its distribution from them and calls
``trainer.env.set_distribution``), ``on_iteration`` runs after each update, and objects
registered in ``trainer.stateful`` are saved with the training state and restored on resume.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import policies
from envs.distributions import distribution_from_dict
from policies.checkpoint import atomic_write, fsync_dir
from policies.networks import NetworkConfig, Policy
from simrl.core.config import require, to_jsonable
from simrl.core.progress import progress
from simrl.core.spec import POLICY_FILE, SPEC_FILE, file_sha256

TRAINING_STATE = "training_state.pt"
CONFIG_FILE = "config.json"
# Options that may change when a run is resumed; everything else must stay as it was.
RESUMABLE = ("train.steps", "train.device", "train.checkpoint_every", "train.progress",
             "train.threads", "train.trust_pickle")


@dataclass
class TrainConfig:
    """What to train, where and for how long."""

    task: str = "hopper"                 # task name (envs.tasks.TASKS)
    algo: str = "ppo"                    # algorithm name (simrl.algos.ALGORITHMS)
    dr: str = "none"                     # none | uniform | doraemon (entropy-maximizing, adapts to the policy's success) | JSON file (distribution or {param: [lo, hi]})
    robust: str = "none"                 # none | hinf (adversarial disturber pushes the base under an H-infinity constraint; PPO only)
    residual: str = ""                   # residual RL on a frozen base: stand | trot (go1) | pusher (panda-push) | reacher (panda-reach) | checkpoint directory | SB3 .zip; empty: none
    residual_scale: float = 0.2          # action = base + residual_scale * residual
    num_envs: int = 64                   # parallel worlds
    steps: int = 3_000_000               # total env steps (all worlds together)
    device: str = "auto"                 # auto | cpu | cuda[:i]
    seed: int = 0                        # random seed
    out: str = ""                        # run directory; default runs/{task}-{algo}-s{seed}
    checkpoint_every: int = 500_000      # env steps between checkpoints; 0: final only
    threads: int = 0                     # torch CPU threads; 0 = half the cores (the sim uses the rest)
    progress: bool = True                # live progress bar
    vec_env: str = "dummy"               # SB3 only: dummy | subproc
    backend: str = "cpu"                 # physics: cpu (MuJoCo, C threads) | warp (MuJoCo Warp on --device, the GPU backend; pip install 'simrl[warp]'; PPO only)
    init: str = ""                       # PPO only: start from this checkpoint's actor, critic and normalizers (a new run: fresh optimizer, step 0, action std from --network.init-log-std); the observation must match
    trust_pickle: bool = False           # WARNING: runs any code in the file. Allow unpickling SB3 files (a residual base zip simrl cannot read from its JSON; resuming an sb3-ppo/sb3-sac run); only for files you made yourself

    def validate(self) -> None:
        require(self.num_envs >= 1, "num_envs", f"must be >= 1, got {self.num_envs}")
        require(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        require(self.checkpoint_every >= 0, "checkpoint_every", f"must be >= 0, got {self.checkpoint_every}")
        require(self.threads >= 0, "threads", f"must be >= 0, got {self.threads}")
        require(self.residual_scale > 0, "residual_scale", f"must be > 0, got {self.residual_scale}")
        require(self.robust in ("none", "hinf"), "robust", f"use none or hinf, got {self.robust!r}")
        require(self.vec_env in ("dummy", "subproc"), "vec_env", f"use dummy or subproc, got {self.vec_env!r}")
        check_backend(self.backend, self.task, self.algo)


def check_backend(backend: str, task: str, algo: str = "ppo") -> None:
    """``--backend``: a known backend; ``warp`` needs MuJoCo Warp installed, PPO and a task whose
    functions run on tensors (ValueError naming the field otherwise)."""
    import importlib.util

    from envs import BACKENDS
    from envs.tasks import TASKS

    require(backend in BACKENDS, "backend", f"use {' or '.join(BACKENDS)}, got {backend!r}")
    if backend != "warp":
        return
    require(importlib.util.find_spec("mujoco_warp") is not None, "backend",
            "warp needs MuJoCo Warp, which is not installed: pip install 'simrl[warp]'")
    require(algo == "ppo", "backend", f"warp runs simrl's PPO only, not --algo {algo}")
    require(task not in TASKS or getattr(TASKS.get(task), "array_generic", False), "backend",
            f"task {task} is not supported by backend warp (numpy-only task functions); use cpu")


@dataclass
class RunConfig:
    """The whole resolved configuration of a run (what ``config.json`` holds): ``train``,
    ``network``, ``task`` (the task's config dataclass) and one section per registered
    algorithm section (``ppo``, ``sac``, ``doraemon``, ``hinf``, ...; see
    :func:`run_config_class`)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    task: Any = None                     # the task's config dataclass (envs.make_config)


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    return to_jsonable(cfg)


LOCK_FILE = ".lock"


class RunLock:
    """An exclusive lock on a run directory for the life of one training process
    (``fcntl.flock`` on ``RUN/.lock``, released by the OS if the process dies): a second
    ``simrl train`` on the same directory fails at once, naming the holder, instead of
    overwriting the first run."""

    def __init__(self, run_dir: str | os.PathLike):
        import fcntl

        self.path = Path(run_dir) / LOCK_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            raise ValueError(f"run directory {Path(run_dir)} is in use by another training process "
                             f"(pid {holder}); wait for it to finish or use another --out") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            self._file.close()  # closing the descriptor releases the lock

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def resolve_dr(text: str) -> Any:
    """``--dr``: ``none``, ``uniform``, or a JSON file with a distribution (``to_dict``) or a
    mapping ``{param: [low, high]}``."""
    if text in ("none", "uniform"):
        return text
    path = Path(text)
    if not path.exists():
        raise ValueError(f"--dr {text!r}: use none, uniform or a JSON file (not found)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--dr {text}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--dr {text}: expected a JSON object, a distribution {{\"type\": ...}} or "
                         f"ranges {{param: [low, high]}}, got a {type(data).__name__}")
    if "type" in data:
        return distribution_from_dict(data, f"--dr {text}")
    bad = [k for k, v in data.items() if not isinstance(v, list)]
    if bad:
        raise ValueError(f"--dr {text}: {bad[0]}: expected [low, high] or [low, high, nominal], "
                         f"got {data[bad[0]]!r}")
    return {k: tuple(v) for k, v in data.items()}


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads if threads > 0 else max(1, (os.cpu_count() or 2) // 2))


class EpisodeWindow:
    """Returns, lengths, success and fall flags and task metrics (per-step means, e.g. go1's
    ``lin_vel_error``) of the last ``size`` episodes."""

    def __init__(self, size: int = 100):
        self.size = size
        self.returns: collections.deque = collections.deque(maxlen=size)
        self.lengths: collections.deque = collections.deque(maxlen=size)
        self.success: collections.deque = collections.deque(maxlen=size)
        self.falls: collections.deque = collections.deque(maxlen=size)
        self.metrics: dict[str, collections.deque] = {}
        self.total = 0

    def add(self, returns: Any, lengths: Any, success: Any, terminated: Any = None,
            metrics: dict[str, Any] | None = None) -> None:
        self.returns.extend(float(r) for r in returns)
        self.lengths.extend(int(n) for n in lengths)
        self.success.extend(bool(s) for s in success)
        if terminated is not None:
            self.falls.extend(bool(t) for t in terminated)
        for key, values in (metrics or {}).items():
            self.metrics.setdefault(key, collections.deque(maxlen=self.size)).extend(float(v) for v in values)
        self.total += len(returns)

    def summary(self) -> dict[str, float]:
        if not self.returns:
            return {}
        out = {"mean_return": float(np.mean(self.returns)), "mean_length": float(np.mean(self.lengths)),
               "success_rate": float(np.mean(self.success))}
        if self.falls:
            out["termination_rate"] = float(np.mean(self.falls))
        out.update({key: float(np.mean(v)) for key, v in self.metrics.items()})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"returns": list(self.returns), "lengths": list(self.lengths),
                "success": list(self.success), "falls": list(self.falls),
                "metrics": {k: list(v) for k, v in self.metrics.items()}, "total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns.extend(state["returns"])
        self.lengths.extend(state["lengths"])
        self.success.extend(state["success"])
        self.falls.extend(state.get("falls", []))
        for key, values in state.get("metrics", {}).items():
            self.metrics.setdefault(key, collections.deque(maxlen=self.size)).extend(values)
        self.total = int(state["total"])


class Trainer:
    """Run plumbing shared by the algorithms: config file, progress bar, TensorBoard,
    checkpoints, hooks and resume. Subclasses implement :meth:`train`, :meth:`policy` and
    their algorithm state."""

    def __init__(self, cfg: RunConfig, out: str | Path):
        self.cfg, self.out = cfg, Path(out)
        self.step = 0
        self.iteration = 0
        self.wall_time = 0.0
        self.episodes = EpisodeWindow()
        self.on_episodes: list[Callable[[Trainer, Any], None]] = []
        self.on_iteration: list[Callable[[Trainer, dict[str, float]], None]] = []
        self.stateful: dict[str, Any] = {}   # name -> object with state_dict/load_state_dict
        self._bar: Any = None
        self._writer: Any = None
        self._t0 = 0.0
        self._last_log = (0.0, 0)

    # -- what subclasses provide ---------------------------------------------------------------
    task: Any
    env: Any = None   # the batched env trained on, when the trainer has one

    @property
    def distribution(self) -> Any:
        """The DR distribution the env samples from (saved in checkpoints)."""
        return self.env.distribution

    def set_distribution(self, dist: Any) -> None:
        """Replaces the env's DR distribution (DORAEMON between updates, resume)."""
        self.env.set_distribution(dist)

    def train(self) -> Path:
        raise NotImplementedError

    def policy(self) -> Policy:
        """The deployable policy as it is now."""
        raise NotImplementedError

    def algorithm_state(self, directory: Path) -> dict[str, Any]:
        """Algorithm state for resuming (may also write files into ``directory``)."""
        raise NotImplementedError

    def load_algorithm_state(self, state: dict[str, Any], directory: Path) -> None:
        raise NotImplementedError

    # -- the run ------------------------------------------------------------------------------
    def begin(self) -> None:
        """Writes the config, opens the progress bar and TensorBoard writer."""
        from torch.utils.tensorboard import SummaryWriter

        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / CONFIG_FILE).write_text(json.dumps(config_to_dict(self.cfg), indent=2,
                                                       allow_nan=False))
        self._writer = SummaryWriter(str(self.out / "tb"), purge_step=self.step or None)
        t = self.cfg.train
        self._bar = progress(t.steps, f"{t.algo} {t.task}", unit="step", initial=self.step,
                             disable=not t.progress)
        self._t0 = time.perf_counter() - self.wall_time
        self._last_log = (time.perf_counter(), self.step)

    def record_episodes(self, returns: Any, lengths: Any, success: Any, batch: Any = None) -> None:
        """Adds finished episodes to the statistics and passes ``batch`` (an
        :class:`~envs.batched.EpisodeBatch`, when the algorithm has one) to the hooks."""
        self.episodes.add(returns, lengths, success, getattr(batch, "terminated", None),
                          getattr(batch, "metrics", None))
        if batch is not None:
            for hook in self.on_episodes:
                hook(self, batch)

    def summary_line(self, unit: str = "steps", return_name: str = "mean return") -> str:
        """One line on the run so far: steps, wall time, recent episodes' return and success."""
        s = self.episodes.summary()
        text = f", {return_name} {s['mean_return']:.1f}, success {s['success_rate']:.0%}" if s else ""
        return f"trained {self.step:,} {unit} in {self.wall_time:.0f} s{text}"

    def log_scalars(self, values: dict[str, float]) -> None:
        """TensorBoard scalars (``"group/name": value``) at the current step, for hooks."""
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, self.step)

    def after_iteration(self, stats: dict[str, float], previous_step: int) -> None:
        """Logging, hooks and checkpoints after the step counter moved past ``previous_step``."""
        now = time.perf_counter()
        self.wall_time = now - self._t0
        last_t, last_step = self._last_log
        sps = (self.step - last_step) / max(now - last_t, 1e-9)
        self._last_log = (now, self.step)
        summary = self.episodes.summary()
        w = self._writer
        for key, value in {**stats, **summary, "steps_per_s": sps}.items():
            group = "episode" if key in summary else ("perf" if key.endswith(("_time", "_per_s")) else "train")
            w.add_scalar(f"{group}/{key}", value, self.step)
        self._bar.update(self.step - self._bar.n)
        postfix = {"sps": f"{sps:,.0f}"}
        if summary:
            postfix.update(ret=f"{summary['mean_return']:.1f}", succ=f"{summary['success_rate']:.0%}")
        self._bar.set_postfix(postfix, refresh=False)
        for hook in self.on_iteration:
            hook(self, stats)
        every = self.cfg.train.checkpoint_every
        if every > 0 and self.step // every > previous_step // every and self.step < self.cfg.train.steps:
            self.save_checkpoint(self.out / "checkpoints" / f"step_{self.step:09d}")

    def finish(self) -> Path:
        """Saves ``final/`` and closes the logs."""
        self.wall_time = time.perf_counter() - self._t0
        final = self.save_checkpoint(self.out / "final")
        self._bar.close()
        self._writer.close()
        return final

    def training_stats(self) -> dict[str, Any]:
        t = self.cfg.train
        return {"algo": t.algo, "steps": self.step, "iterations": self.iteration, "seed": t.seed,
                "num_envs": t.num_envs, "wall_time_s": round(self.wall_time, 3),
                "episodes": self.episodes.total, **self.episodes.summary(),
                "config": config_to_dict(self.cfg)}

    def save_checkpoint(self, path: Path) -> Path:
        """A deployable checkpoint plus the training state to resume from. Every file is
        written atomically (temporary file, fsync, rename); ``training_state.pt`` goes last and
        records the hashes of the others, so a checkpoint is complete exactly when it has one
        that matches (an older one is removed first)."""
        path.mkdir(parents=True, exist_ok=True)
        (path / TRAINING_STATE).unlink(missing_ok=True)
        fsync_dir(path)
        policies.save(path, self.policy(), self.task, distribution=self.distribution,
                      training=self.training_stats())
        state = {"algo": self.cfg.train.algo, "step": self.step, "iteration": self.iteration,
                 "wall_time": self.wall_time, "episodes": self.episodes.state_dict(),
                 "algorithm": self.algorithm_state(path),
                 "stateful": {k: v.state_dict() for k, v in self.stateful.items()},
                 "files": {name: file_sha256(path / name) for name in (POLICY_FILE, SPEC_FILE)}}
        atomic_write(path / TRAINING_STATE, lambda f: torch.save(state, f))
        return path

    def resume(self, path: str | Path) -> None:
        """Continues from the checkpoint directory ``path`` (step counter, algorithm state, DR
        distribution, episode statistics, registered objects)."""
        path = Path(path)
        state = read_training_state(path)
        if state["algo"] != self.cfg.train.algo:
            raise ValueError(f"{path} was trained with {state['algo']}, not {self.cfg.train.algo}")
        self.step, self.iteration = int(state["step"]), int(state["iteration"])
        self.wall_time = float(state["wall_time"])
        self.episodes.load_state_dict(state["episodes"])
        spec = policies.load_spec(path)
        if spec.get("dr") is not None:
            self.set_distribution(distribution_from_dict(spec["dr"]))
        for name, obj in self.stateful.items():
            obj.load_state_dict(state["stateful"][name])
        self.load_algorithm_state(state["algorithm"], path)




def read_training_state(path: Path) -> dict[str, Any]:
    """The ``training_state.pt`` of the checkpoint directory ``path``, read with
    ``weights_only`` (pickled code is refused, never run); ValueError naming the file."""
    file = path / TRAINING_STATE
    if not file.exists():
        raise FileNotFoundError(f"{path} has no {TRAINING_STATE} to resume from")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise policies.CheckpointError(
            f"{file}: holds pickled objects that safe (weights_only) loading refuses; nothing in "
            f"it was run ({str(exc).splitlines()[0][:160]})") from None
    except Exception as exc:  # RuntimeError, EOFError, ... of an empty or partial file
        raise policies.CheckpointError(f"{file}: cannot be read, the file is truncated or corrupted "
                                       f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    missing = [k for k in ("algo", "step", "iteration", "wall_time", "episodes", "algorithm", "stateful")
               if not isinstance(state, dict) or k not in state]
    if missing:
        raise policies.CheckpointError(f"{file}: not a simrl training state (missing {missing[0]})")
    return state


def check_complete(path: Path) -> int:
    """Raises ValueError unless the checkpoint directory ``path`` was written completely (its
    training state, spec and weights read and agree); returns its step."""
    state = read_training_state(path)
    for name, digest in state.get("files", {}).items():
        if not (path / name).exists() or file_sha256(path / name) != digest:
            raise policies.CheckpointError(f"{path / name}: not the file its {TRAINING_STATE} was "
                                           "saved with (interrupted write)")
    policies.load(path)
    return int(state["step"])


def _checkpoint_order(path: Path) -> float:
    """Newest first: a checkpoint's step from its name, ``final`` by its spec (or last)."""
    if path.name.startswith("step_"):
        try:
            return float(int(path.name[5:]))
        except ValueError:
            return -1.0
    try:
        return float(policies.load_spec(path)["training"]["steps"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def find_resume_checkpoint(path: Path) -> tuple[Path, Path, str | None]:
    """(run directory, checkpoint, notice) for ``--resume PATH``: PATH is a run directory (its
    latest complete checkpoint is used; ``notice`` names the newer ones skipped because a
    write was interrupted) or one checkpoint directory inside a run (which must be complete)."""
    if (path / TRAINING_STATE).exists() or (path / "spec.json").exists():
        run = path.parent if path.name == "final" else path.parent.parent
        try:
            check_complete(path)
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(f"--resume {path}: incomplete checkpoint: {exc} (--resume {run} falls "
                             "back to the run's last complete checkpoint)") from None
        return run, path, None
    if not (path / CONFIG_FILE).exists():
        raise FileNotFoundError(f"--resume {path}: not a run directory (no {CONFIG_FILE}) "
                                "nor a checkpoint (no training_state.pt)")
    found = [p for p in [path / "final", *(path / "checkpoints").glob("step_*")] if p.is_dir()]
    skipped: list[str] = []
    for candidate in sorted(found, key=_checkpoint_order, reverse=True):
        try:
            check_complete(candidate)
        except (ValueError, FileNotFoundError) as exc:
            skipped.append(f"{candidate.name} ({str(exc).split(': ', 1)[-1][:120]})")
            continue
        notice = (f"--resume: skipped incomplete checkpoint{'s' if len(skipped) > 1 else ''} "
                  f"{'; '.join(skipped)}; continuing from {candidate}") if skipped else None
        return path, candidate, notice
    raise FileNotFoundError(f"--resume {path}: the run has no complete checkpoint"
                            + (f" (incomplete: {'; '.join(skipped)})" if skipped else " yet"))
