"""``simrl train``: PPO on the batched env (or SB3 PPO/SAC on the Gymnasium env), with a live
progress bar, TensorBoard scalars, periodic self-describing checkpoints and resume.

A run directory holds ``config.json`` (the resolved configuration: every field of every
section), ``tb/`` (TensorBoard events), ``checkpoints/step_XXXXXXXXX/`` and ``final/``. Each
checkpoint is a deployable :mod:`policies` checkpoint plus ``training_state.pt`` (optimizer,
critic, normalizers, learning rate, step counter, RNG states) that ``--resume`` continues from.
Resuming is reproducible (the same checkpoint always continues the same way), but the episodes
running at the checkpoint start over, so it is not bit-identical to an uninterrupted run.

Every config field can be set from the command line: ``--ppo.learning-rate 1e-3``,
``--network.actor-hidden 256 256``, ``--task.max-episode-steps 500``.

Other algorithms plug in through :class:`Trainer`'s hooks: ``on_episodes`` sees every batch of
finished episodes (DORAEMON updates its distribution from them and calls
``trainer.env.set_distribution``), ``on_iteration`` runs after each PPO update, and objects
registered in ``trainer.stateful`` are saved with the training state and restored on resume.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import policies
from policies.networks import ActorCritic, NetworkConfig, Policy
from simrl.config import add_arguments
from simrl.core.config import apply_overrides, from_dict, to_jsonable
from simrl.core.progress import progress
from simrl.dr.curriculum import DoraemonTrainConfig
from simrl.ppo import PPO, PPOConfig
from simrl.robust.hinf import HinfConfig

ALGORITHMS = ("ppo", "sb3-ppo", "sb3-sac")
TRAINING_STATE = "training_state.pt"
CONFIG_FILE = "config.json"
# Options that may change when a run is resumed; everything else must stay as it was.
RESUMABLE = ("train.steps", "train.device", "train.checkpoint_every", "train.progress",
             "train.threads")


@dataclass
class TrainConfig:
    """What to train, where and for how long."""

    task: str = "hopper"
    algo: str = "ppo"                    # ppo | sb3-ppo | sb3-sac
    dr: str = "none"                     # none | uniform | doraemon | JSON file (distribution or {param: [lo, hi]})
    robust: str = "none"                 # none | hinf (adversarial disturber, PPO only)
    residual: str = ""                   # residual RL on a frozen base: stand | trot | pusher | checkpoint | SB3 zip
    residual_scale: float = 0.2          # action = base + residual_scale * residual
    num_envs: int = 64
    steps: int = 3_000_000               # total env steps (all worlds together)
    device: str = "auto"                 # auto | cpu | cuda[:i]
    seed: int = 0
    out: str = ""                        # run directory; default runs/{task}-{algo}-s{seed}
    checkpoint_every: int = 500_000      # env steps between checkpoints
    threads: int = 0                     # torch CPU threads; 0 = half the cores (the sim uses the rest)
    progress: bool = True                # live progress bar
    vec_env: str = "dummy"               # SB3 only: dummy | subproc


@dataclass
class SACConfig:
    """Stable-Baselines3 SAC hyperparameters (``--algo sb3-sac``)."""

    learning_rate: float = 3e-4
    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 10_000
    tau: float = 0.005
    gamma: float = 0.99
    train_freq: int = 1
    gradient_steps: int = 1


@dataclass
class RunConfig:
    """The whole resolved configuration of a run (what ``config.json`` holds)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    doraemon: DoraemonTrainConfig = field(default_factory=DoraemonTrainConfig)
    hinf: HinfConfig = field(default_factory=HinfConfig)
    task: Any = None                     # the task's config dataclass (envs.make_config)


# Defaults by algorithm, applied after the task's (``Task.train_defaults``) and before the user's.
DEFAULTS: dict[str, dict[str, Any]] = {
    "sb3-sac": {"train.num_envs": 1, "network.actor_hidden": (256, 256),
                "network.critic_hidden": (256, 256), "network.activation": "relu",
                "network.normalize_obs": False},
}


def resolve_config(overrides: dict[str, Any]) -> RunConfig:
    """The run config for dotted ``overrides`` (``{"ppo.learning_rate": 1e-3, "task.x": ...}``):
    defaults, then the task's and the algorithm's defaults, then the overrides."""
    from envs.tasks import TASKS, make_config

    task = overrides.get("train.task", TrainConfig.task)
    algo = overrides.get("train.algo", TrainConfig.algo)
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algo!r}; choose one of: {', '.join(ALGORITHMS)}")
    cfg = RunConfig(task=make_config(task))
    merged = {**TASKS.get(task).train_defaults, **DEFAULTS.get(algo, {}), **overrides}
    return apply_overrides(cfg, merged, "config")


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    return to_jsonable(cfg)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuilds a :class:`RunConfig` from ``config.json`` content."""
    from envs.tasks import make_config

    task = data.get("train", {}).get("task", TrainConfig.task)
    return from_dict(RunConfig(task=make_config(task)), data, "config.json")


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
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "type" in data:
        from envs.distributions import distribution_from_dict
        return distribution_from_dict(data)
    return {k: tuple(v) for k, v in data.items()}


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads if threads > 0 else max(1, (os.cpu_count() or 2) // 2))


class EpisodeWindow:
    """Returns, lengths and success flags of the last ``size`` episodes."""

    def __init__(self, size: int = 100):
        self.returns: collections.deque = collections.deque(maxlen=size)
        self.lengths: collections.deque = collections.deque(maxlen=size)
        self.success: collections.deque = collections.deque(maxlen=size)
        self.total = 0

    def add(self, returns: Any, lengths: Any, success: Any) -> None:
        self.returns.extend(float(r) for r in returns)
        self.lengths.extend(int(n) for n in lengths)
        self.success.extend(bool(s) for s in success)
        self.total += len(returns)

    def summary(self) -> dict[str, float]:
        if not self.returns:
            return {}
        return {"mean_return": float(np.mean(self.returns)), "mean_length": float(np.mean(self.lengths)),
                "success_rate": float(np.mean(self.success))}

    def state_dict(self) -> dict[str, Any]:
        return {"returns": list(self.returns), "lengths": list(self.lengths),
                "success": list(self.success), "total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns.extend(state["returns"])
        self.lengths.extend(state["lengths"])
        self.success.extend(state["success"])
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
    distribution: Any

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
        self.episodes.add(returns, lengths, success)
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
        """A deployable checkpoint plus the training state to resume from."""
        policies.save(path, self.policy(), self.task, distribution=self.distribution,
                      training=self.training_stats())
        state = {"algo": self.cfg.train.algo, "step": self.step, "iteration": self.iteration,
                 "wall_time": self.wall_time, "episodes": self.episodes.state_dict(),
                 "algorithm": self.algorithm_state(path),
                 "stateful": {k: v.state_dict() for k, v in self.stateful.items()}}
        torch.save(state, path / TRAINING_STATE)
        return path

    def resume(self, path: str | Path) -> None:
        """Continues from the checkpoint directory ``path`` (step counter, algorithm state, DR
        distribution, episode statistics, registered objects)."""
        path = Path(path)
        file = path / TRAINING_STATE
        if not file.exists():
            raise FileNotFoundError(f"{path} has no {TRAINING_STATE} to resume from")
        state = torch.load(file, map_location="cpu", weights_only=True)
        if state["algo"] != self.cfg.train.algo:
            raise ValueError(f"{path} was trained with {state['algo']}, not {self.cfg.train.algo}")
        self.step, self.iteration = int(state["step"]), int(state["iteration"])
        self.wall_time = float(state["wall_time"])
        self.episodes.load_state_dict(state["episodes"])
        spec = policies.load_spec(path)
        if spec.get("dr") is not None:
            from envs.distributions import distribution_from_dict
            self.set_distribution(distribution_from_dict(spec["dr"]))
        for name, obj in self.stateful.items():
            obj.load_state_dict(state["stateful"][name])
        self.load_algorithm_state(state["algorithm"], path)

    def set_distribution(self, dist: Any) -> None:
        raise NotImplementedError


class PPOTrainer(Trainer):
    """simrl's batched PPO on :func:`envs.make`'s env (device tensors end to end). ``env``
    replaces that env with another of the same API (a wrapper: residual, adversary)."""

    def __init__(self, cfg: RunConfig, out: str | Path, env: Any = None):
        import envs

        super().__init__(cfg, out)
        t = cfg.train
        set_threads(t.threads)
        self.device = resolve_device(t.device)
        torch.manual_seed(t.seed)
        self.env = env if env is not None else envs.make(
            t.task, t.num_envs, self.device, dr=resolve_dr(t.dr), seed=t.seed, config=cfg.task)
        self.task = self.env.task
        self.model = ActorCritic(self.env.observation_size, self.env.action_size, cfg.network)
        self.ppo = PPO(self.model, cfg.ppo, t.num_envs, self.device)
        self.obs: torch.Tensor | None = None

    @property
    def distribution(self) -> Any:
        return self.env.distribution

    def set_distribution(self, dist: Any) -> None:
        self.env.set_distribution(dist)

    def policy(self) -> Policy:
        return self.model.policy

    def _on_step(self, info: dict[str, Any]) -> None:
        batch = info.get("episodes")
        if batch is not None:
            self.record_episodes(batch.returns, batch.lengths, batch.success, batch)

    def train(self) -> Path:
        self.begin()
        if self.obs is None:
            self.obs = self.env.reset()
        per_iteration = self.cfg.train.num_envs * self.cfg.ppo.num_steps
        while self.step < self.cfg.train.steps:
            self.obs, stats = self.ppo.learn(self.env, self.obs, self._on_step)
            previous = self.step
            self.step += per_iteration
            self.iteration += 1
            self.after_iteration(stats, previous)
        return self.finish()

    def algorithm_state(self, directory: Path) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(),
               "env": json.dumps(self.env.rng.bit_generator.state)}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"ppo": self.ppo.state_dict(), "rng": rng}

    def load_algorithm_state(self, state: dict[str, Any], directory: Path) -> None:
        self.ppo.load_state_dict(state["ppo"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.env.rng.bit_generator.state = json.loads(rng["env"])
        # Episodes in flight at save time are not restored: the envs start fresh episodes.
        self.obs = self.env.reset()


def make_ppo_trainer(cfg: RunConfig, out: str | Path) -> PPOTrainer:
    """PPO with the options that change its env or add hooks: ``--dr doraemon`` (the
    distribution adapts between iterations), ``--residual BASE`` (the policy corrects a frozen
    base controller) and ``--robust hinf`` (a learning disturber pushes the robot)."""
    from envs.batched import BatchedEnv
    from envs.tasks import make_task
    from simrl.dr.curriculum import DoraemonCurriculum
    from simrl.robust.hinf import DisturbedEnv
    from simrl.robust.residual import ResidualEnv, make_base

    t = cfg.train
    if t.robust not in ("none", "hinf"):
        raise ValueError(f"unknown --robust {t.robust!r}: use none or hinf")
    if t.residual and t.robust == "hinf":
        raise ValueError("--residual and --robust hinf cannot be combined")
    torch.manual_seed(t.seed)   # the disturber's network is built before the actor's
    task = make_task(t.task, config=cfg.task)
    dr = "uniform" if t.dr == "doraemon" else resolve_dr(t.dr)
    env: Any = BatchedEnv(task, t.num_envs, resolve_device(t.device), dr=dr, seed=t.seed,
                          external_forces=t.robust == "hinf")
    curriculum = (DoraemonCurriculum(env, cfg.doraemon, Path(out) / "dr_history.png")
                  if t.dr == "doraemon" else None)
    if t.residual:
        cfg.network.init_log_std = min(cfg.network.init_log_std, -1.0)
        env = ResidualEnv(env, make_base(t.residual, task), t.residual_scale)
    if t.robust == "hinf":
        cfg.hinf.ppo.num_steps = cfg.ppo.num_steps   # the disturber collects alongside the actor
        env = DisturbedEnv(env, cfg.hinf)
    trainer = PPOTrainer(cfg, out, env=env)
    if curriculum is not None:
        curriculum.attach(trainer)
    if t.residual:  # the residual starts at exactly zero: training starts at the base controller
        last = trainer.model.policy.actor[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
    if t.robust == "hinf":
        def disturber_update(tr: Trainer, stats: dict[str, float]) -> None:
            tr.log_scalars({f"hinf/{key}": value for key, value in env.end_iteration().items()})
        trainer.on_iteration.insert(0, disturber_update)
        trainer.stateful["hinf"] = env
    return trainer


def make_trainer(cfg: RunConfig, out: str | Path) -> Trainer:
    """The trainer of ``cfg.train.algo``."""
    algo = cfg.train.algo
    if algo == "ppo":
        return make_ppo_trainer(cfg, out)
    if cfg.train.dr == "doraemon" or cfg.train.robust != "none" or cfg.train.residual:
        raise ValueError("--dr doraemon, --robust and --residual are available with --algo ppo only")
    if algo in ("sb3-ppo", "sb3-sac"):
        from simrl.sb3_train import SB3Trainer
        return SB3Trainer(cfg, out)
    raise ValueError(f"unknown algorithm {algo!r}; choose one of: {', '.join(ALGORITHMS)}")


def find_resume_checkpoint(path: Path) -> tuple[Path, Path]:
    """(run directory, checkpoint) for ``--resume PATH``: PATH is a run directory (its latest
    checkpoint is used) or one checkpoint directory inside a run."""
    if (path / TRAINING_STATE).exists():
        run = path.parent if path.name == "final" else path.parent.parent
        return run, path
    if not (path / CONFIG_FILE).exists():
        raise FileNotFoundError(f"--resume {path}: not a run directory (no {CONFIG_FILE}) "
                                "nor a checkpoint (no training_state.pt)")
    found = [p for p in [path / "final", *(path / "checkpoints").glob("step_*")]
             if (p / TRAINING_STATE).exists()]
    if not found:
        raise FileNotFoundError(f"--resume {path}: the run has no checkpoint yet")
    return path, max(found, key=lambda p: policies.load_spec(p)["training"]["steps"])


# -- command line -------------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction) -> None:
    from envs.tasks import TASKS

    p = sub.add_parser("train", help="train a policy (PPO, SB3 PPO or SAC)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, TrainConfig, "train", "run", flat=True, helps={
        "task": f"task: {', '.join(TASKS)} (default: {TrainConfig.task})",
        "algo": f"algorithm: {', '.join(ALGORITHMS)} (default: ppo)",
        "dr": "domain randomization: none, uniform, doraemon (entropy-maximizing, adapts to the "
              "policy's success) or a JSON file (default: none)",
        "robust": "none, or hinf: an adversarial disturber pushes the base under an H-infinity "
                  "constraint (default: none)",
        "residual": "train a residual on a frozen base: stand, trot (go1), pusher (panda), a "
                    "checkpoint directory or an SB3 .zip (default: none)",
        "residual_scale": "action = base + scale * residual (default: 0.2)",
        "num_envs": "parallel worlds (default: 64; go1-velocity 256; sb3-sac 1)",
        "steps": f"total env steps (default: {TrainConfig.steps:,})",
        "device": "auto, cpu or cuda (default: auto)",
        "seed": "random seed (default: 0)",
        "out": "run directory (default: runs/TASK-ALGO-sSEED)",
        "checkpoint_every": f"env steps between checkpoints (default: {TrainConfig.checkpoint_every:,})",
        "threads": "torch CPU threads, 0 = half the cores (default: 0)",
        "progress": "live progress bar: true or false (default: true)",
        "vec_env": "SB3 vector env: dummy or subproc (default: dummy)"})
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR (or from the checkpoint directory DIR)")
    add_arguments(p, NetworkConfig, "network")
    add_arguments(p, PPOConfig, "ppo")
    add_arguments(p, SACConfig, "sac", "sac options (--algo sb3-sac)")
    add_arguments(p, DoraemonTrainConfig, "doraemon", "DORAEMON options (--dr doraemon)")
    add_arguments(p, HinfConfig, "hinf", "H-infinity disturber options (--robust hinf)")
    p.add_argument("--dr-alpha", dest="doraemon.alpha", default=argparse.SUPPRESS, metavar="A",
                   help="DORAEMON success-rate target (= --doraemon.alpha)")
    p.add_argument("--dr-kl", dest="doraemon.kl_bound", default=argparse.SUPPRESS, metavar="EPS",
                   help="DORAEMON KL trust region per update (= --doraemon.kl-bound)")
    add_arguments(p, [t.config_class for t in TASKS.values()], "task",
                  "task config options (fields of the chosen task's config)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in vars(args).items() if "." in k}
    if args.resume:
        run_dir, checkpoint = find_resume_checkpoint(Path(args.resume))
        fixed = sorted(set(overrides) - set(RESUMABLE))
        if fixed:
            raise ValueError(f"--resume continues the run as configured; only "
                             f"{', '.join(RESUMABLE)} may change (got {', '.join(fixed)})")
        cfg = apply_overrides(config_from_dict(json.loads((run_dir / CONFIG_FILE).read_text())),
                              overrides, "config")
    else:
        cfg = resolve_config(overrides)
        t = cfg.train
        run_dir = Path(t.out or f"runs/{t.task}-{t.algo}-s{t.seed}")
        if (run_dir / CONFIG_FILE).exists():
            raise ValueError(f"run directory {run_dir} already holds a run; use --resume {run_dir} "
                             "or another --out")
        checkpoint = None
    cfg.train.out = str(run_dir)
    trainer = make_trainer(cfg, run_dir)
    if checkpoint is not None:
        trainer.resume(checkpoint)
        print(f"resuming {run_dir} from {checkpoint} at step {trainer.step:,}")
    final = trainer.train()
    print(f"{trainer.summary_line()}; final checkpoint: {final}")
    return 0
