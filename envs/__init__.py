"""Domain-randomized MuJoCo environments: robot tasks, physical randomization, batched worlds.

>>> import envs
>>> env = envs.make("go1-velocity", num_envs=256, device="cpu", dr="uniform", seed=0)
>>> obs = env.reset()                      # torch.Tensor (256, 45)
>>> obs, reward, terminated, truncated, info = env.step(actions)
"""

from __future__ import annotations

from typing import Any, Mapping

from envs.randomization import ParamRange
from envs.distributions import Distribution, Fixed, RandomizationError, Uniform
from simrl.core.robot_state import RobotState
from envs.tasks import TASKS, Task, TaskConfig, make_config, make_task, task_names


BACKENDS = ("cpu", "warp")

task_names()  # imports every task module: their Gymnasium ids (``simrl/Hopper-v0`` ...) now exist


def make(task: str | Task, num_envs: int = 1, device: Any = "cpu",
         dr: str | Mapping | Distribution | None = "none", seed: int = 0, *,
         config: TaskConfig | None = None, nthread: int | None = None, backend: str = "cpu",
         autoreset: bool = True, external_forces: bool = False, episode_interval: int = 1,
         **overrides):
    """Builds a :class:`~envs.batched.BatchedEnv` (``backend="cpu"``: MuJoCo's C threads) or
    a :class:`~envs.warp_env.WarpEnv` (``backend="warp"``: MuJoCo Warp, on ``device``).

    ``task``: a task name (``envs.task_names()``) or a built task. ``dr``: ``"none"`` (nominal
    physics), ``"uniform"`` (the task's default ranges), a mapping ``{param: (low, high)}`` or a
    distribution object. ``overrides`` set task config fields, e.g. ``model="my_go1.xml"``.
    ``episode_interval`` (warp): finished episodes are read back to the host every this many
    steps (PPO: its rollout length, so a GPU rollout never waits for the host).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if isinstance(task, str):
        task = make_task(task, config=config, **overrides)
    elif config is not None or overrides:
        raise ValueError("config/overrides apply only when the task is given by name")
    if backend == "warp":
        from envs.warp_env import WarpEnv
        return WarpEnv(task, num_envs, device=device, dr=dr, seed=seed, autoreset=autoreset,
                       external_forces=external_forces, episode_interval=episode_interval)
    from envs.batched import BatchedEnv
    return BatchedEnv(task, num_envs, device=device, dr=dr, seed=seed, nthread=nthread,
                      autoreset=autoreset, external_forces=external_forces)


__all__ = ["make", "BACKENDS", "make_task", "make_config", "task_names", "TASKS", "Task", "TaskConfig",
           "RobotState", "Distribution", "Fixed", "Uniform", "ParamRange", "RandomizationError"]
