"""Registries end to end: a toy task, a toy randomization kind, a toy algorithm, a toy robot
back-end and a toy command, all registered from this file alone, train, evaluate, export, deploy
and rank through the ``simrl`` command line (no central table names them)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import pytest
import torch

import envs
from deploy.robots import ROBOTS, RobotOptions, register_robot
from deploy.robots.mujoco import MujocoRobot, SimConfig
from envs.perturbation import Perturbation
from envs.randomization import KINDS, FieldWrite, register_kind
from envs.tasks.base import TASKS, ResetState, Task, TaskConfig, register_task
from policies.networks import Policy
from simrl.algos import ALGORITHMS, register_algorithm
from simrl.cli import COMMANDS, command, main, parse
from simrl.core.config import require
from simrl.core.robot_state import RobotState
from simrl.train import RunConfig, Trainer, resolve_dr

SLIDER = """
<mujoco model="toy-slider">
  <option timestep="0.01"/>
  <worldbody>
    <body name="cart">
      <joint name="slide" type="slide" axis="1 0 0" range="-1 1" limited="true" damping="1"/>
      <geom name="cart" type="box" size="0.1 0.1 0.1" mass="1"/>
    </body>
  </worldbody>
  <actuator>
    <position name="drive" joint="slide" kp="20" ctrlrange="-1 1" forcerange="-40 40"/>
  </actuator>
</mujoco>
"""
TARGET = 0.5   # the slider should move here
FAST_RANK = ["--ood.reference-envs", "4", "--ood.reference-steps", "40", "--sim.num-envs", "2",
             "--ood.mahalanobis.clusters", "2", "--ood.gmm.components", "2"]


def _toy_damping(model: mujoco.MjModel, target: str | None, param: str) -> list[FieldWrite]:
    """The toy randomization kind: scales every joint's damping."""
    return [FieldWrite("dof_damping", np.arange(model.nv), None, "scale")]


def make_toy_task(xml: Path) -> type[Task]:
    @dataclass
    class ToySliderConfig(TaskConfig):
        model: str = str(xml)
        control_dt: float = 0.05
        max_episode_steps: int = 40
        success_return: float | None = -2.0
        randomization: dict[str, tuple[float, ...]] = field(
            default_factory=lambda: {"toy_damping": (0.5, 2.0), "mass": (0.8, 1.2)})

    class ToySlider(Task):
        name = "toy-slider"
        config_class = ToySliderConfig

        @property
        def observation_names(self) -> list[str]:
            return ["slide_pos", "slide_vel", "target"]

        @property
        def action_names(self) -> list[str]:
            return ["drive"]

        def reset(self, rng: np.random.Generator, n: int) -> ResetState:
            qpos = rng.uniform(-0.2, 0.2, (n, 1))   # the command: where to move
            return ResetState(qpos, np.zeros((n, 1)), np.zeros((n, 1)),
                              {"command": np.full((n, 1), TARGET)})

        def robot_state(self, qpos, qvel, sensordata, task_state, last_action) -> RobotState:
            return RobotState(joint_pos=qpos, joint_vel=qvel, command=task_state["command"],
                              last_action=last_action)

        def observation(self, rs: RobotState) -> np.ndarray:
            return np.concatenate([rs.joint_pos, rs.joint_vel, rs.command], axis=1)

        def action_to_ctrl(self, action, rs, task_state) -> np.ndarray:
            return np.clip(action, -1.0, 1.0)

        def reward(self, prev, rs, action, ctrl):
            error = np.abs(rs.joint_pos[:, 0] - rs.command[:, 0])
            return -error, np.zeros(rs.n, dtype=bool), {"error": error}

    return register_task(ToySlider)


@dataclass
class ToySearchConfig:
    """Hill climbing on the actor's weights."""

    sigma: float = 0.1                   # std of the weight perturbation per iteration

    def validate(self) -> None:
        require(self.sigma > 0, "sigma", f"must be > 0, got {self.sigma}")


class ToySearchTrainer(Trainer):
    """Keeps a perturbation of the actor's weights when it collects more reward."""

    def __init__(self, cfg: RunConfig, out: str | Path):
        super().__init__(cfg, out)
        t = cfg.train
        torch.manual_seed(t.seed)
        self.env = envs.make(t.task, t.num_envs, "cpu", dr=resolve_dr(t.dr), seed=t.seed,
                             config=cfg.task)
        self.task = self.env.task
        self.actor = Policy(self.env.observation_size, self.env.action_size, cfg.network)
        self.best = -math.inf

    def policy(self) -> Policy:
        return self.actor

    def _rollout(self) -> float:
        obs, total = self.env.reset(), 0.0
        with torch.no_grad():
            for _ in range(self.task.cfg.max_episode_steps):
                obs, reward, _, _, info = self.env.step(self.actor(obs))
                total += float(reward.sum())
                if "episodes" in info:
                    ep = info["episodes"]
                    self.record_episodes(ep.returns, ep.lengths, ep.success, ep)
        return total / self.cfg.train.num_envs

    def train(self) -> Path:
        self.begin()
        while self.step < self.cfg.train.steps:
            saved = [p.detach().clone() for p in self.actor.parameters()]
            with torch.no_grad():
                for p in self.actor.parameters():
                    p.add_(self.cfg.toy.sigma * torch.randn_like(p))
            score = self._rollout()
            if score > self.best:
                self.best = score
            else:
                with torch.no_grad():
                    for p, old in zip(self.actor.parameters(), saved):
                        p.copy_(old)
            previous = self.step
            self.step += self.cfg.train.num_envs * self.task.cfg.max_episode_steps
            self.iteration += 1
            self.after_iteration({"best_return": self.best}, previous)
        return self.finish()

    def algorithm_state(self, directory: Path) -> dict[str, Any]:
        return {"best": self.best, "actor": self.actor.state_dict()}

    def load_algorithm_state(self, state: dict[str, Any], directory: Path) -> None:
        self.best = float(state["best"])
        self.actor.load_state_dict(state["actor"])


class HeavyCart(MujocoRobot):
    """The toy back-end ``heavy-cart:KG``: the task's MuJoCo robot with the cart's mass set to
    KG times nominal, built only from the robot URI (a stand-in for a real robot's driver)."""


def make_heavy_cart(uri: str, spec: dict, options: RobotOptions) -> HeavyCart:
    scale = float(uri.partition(":")[2] or 1.0)
    cfg = SimConfig.from_spec(spec, None, Perturbation(params={"mass:cart": scale}), options.seed)
    return HeavyCart(cfg, options.realtime, float(spec["control_dt"]), options.rt_priority)


@dataclass
class ToyReportArgs:
    """Summarize a toy run."""

    run: str                             # run directory
    scale: float = 1.0                   # multiply the reported steps by this

    def validate(self) -> None:
        require(self.scale > 0, "--scale", f"must be > 0, got {self.scale}")


def toy_report(argv: list[str]) -> int:
    """``simrl toy-report --run DIR``: the run's algorithm and steps, from its final spec."""
    args = parse(ToyReportArgs, argv, "simrl toy-report")
    spec = json.loads((Path(args.run) / "final" / "spec.json").read_text())
    print(f"toy-report: {spec['training']['algo']} {spec['training']['steps'] * args.scale:g} steps")
    return 0


@pytest.fixture
def toy(tmp_path):
    """Registers the toy task, randomization kind and algorithm; removes them afterwards."""
    xml = tmp_path / "slider.xml"
    xml.write_text(SLIDER)
    register_kind("toy_damping", "scale", nominal=1.0, bound="non_negative")(_toy_damping)
    make_toy_task(xml)
    register_algorithm("toy-search", sections={"toy": ToySearchConfig},
                       defaults={"network.actor_hidden": (8,), "network.normalize_obs": False},
                       help="hill climbing on the actor's weights")(ToySearchTrainer)
    register_robot("heavy-cart", "heavy-cart:KG: the toy slider with a heavier cart")(make_heavy_cart)
    command("toy-report", help="summarize a toy run")(toy_report)
    yield
    COMMANDS.unregister("toy-report")
    ROBOTS.unregister("heavy-cart")
    TASKS.unregister("toy-slider")
    KINDS.unregister("toy_damping")
    ALGORITHMS.unregister("toy-search")


def test_toy_task_and_algorithm_train_evaluate_deploy_and_rank(toy, tmp_path, capsys):
    dr = tmp_path / "dr.json"   # a --dr mapping with the toy kind
    dr.write_text(json.dumps({"toy_damping": [0.5, 2.0], "mass": [0.8, 1.2]}))
    run = tmp_path / "run"
    assert main(["train", "--task", "toy-slider", "--algo", "toy-search", "--dr", str(dr),
                 "--num-envs", "8", "--steps", "3200", "--checkpoint-every", "1600",
                 "--toy.sigma", "0.3", "--progress", "false", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["toy"] == {"sigma": 0.3} and config["network"]["actor_hidden"] == [8]
    final = run / "final"
    spec = json.loads((final / "spec.json").read_text())
    assert spec["task"] == "toy-slider" and spec["training"]["algo"] == "toy-search"
    assert spec["dr"]["names"] == ["toy_damping", "mass"]

    # the algorithm's section validates like the built-in ones, before any run directory
    assert main(["train", "--task", "toy-slider", "--algo", "toy-search", "--toy.sigma", "-1",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "toy.sigma: must be > 0" in capsys.readouterr().err and not (tmp_path / "bad").exists()

    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(final), "--episodes", "8", "--dr", str(dr),
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["task"] == "toy-slider" and result["episodes"] == 8 and "error" in result["metrics"]

    assert main(["export", "--checkpoint", str(final)]) == 0
    logs = tmp_path / "logs"
    for seed in (0, 1):
        assert main(["deploy", "--checkpoint", str(final), "--robot", "mujoco", "--lockstep",
                     "--duration", "1", "--seed", str(seed), "--soft-start", "0",
                     "--log", str(logs / f"real{seed}.mcap")]) == 0
    assert "steps 20 (20 by the policy)" in capsys.readouterr().out

    # the toy back-end, by its URI scheme: same loop, same safety layer, its own physics
    assert main(["deploy", "--checkpoint", str(final), "--robot", "heavy-cart:3", "--lockstep",
                 "--duration", "1", "--soft-start", "0", "--log", str(logs / "heavy.mcap")]) == 0
    out = capsys.readouterr().out
    assert "on heavy-cart:3" in out and "steps 20 (20 by the policy)" in out
    assert main(["deploy", "--checkpoint", str(final), "--robot", "nowhere://x", "--lockstep"]) == 2
    err = capsys.readouterr().err
    assert "unknown robot 'nowhere://x'" in err and "heavy-cart:KG" in err

    # the toy command: its options, validation and help come from its dataclass
    assert main(["toy-report", "--run", str(run), "--scale", "0.5"]) == 0
    assert "toy-report: toy-search 1600 steps" in capsys.readouterr().out
    assert main(["toy-report", "--run", str(run), "--scale", "-1"]) == 2
    assert "simrl toy-report: error: --scale: must be > 0" in capsys.readouterr().err

    pool = [str(run / "checkpoints" / "step_000001600"), str(final)]
    assert main(["rank", "--checkpoints", *pool, "--real-logs", str(logs),
                 "--out", str(tmp_path / "rank"), *FAST_RANK]) == 0
    ranking = json.loads((tmp_path / "rank" / "ranking.json").read_text())
    assert len(ranking["checkpoints"]) == 2


def test_registered_names_are_listed_and_removed(toy):
    assert "toy-slider" in TASKS and "toy-search" in ALGORITHMS and "toy_damping" in KINDS
    assert "heavy-cart" in ROBOTS and "toy-report" in COMMANDS
    with pytest.raises(ValueError, match="already registered"):
        register_algorithm("toy-search")(lambda cfg, out: None)


def test_hardware_back_ends_refuse_options_they_cannot_honour():
    """Lockstep, perturbations and link options name what the back-end cannot do, before any
    connection is tried."""
    from deploy.robots import make_robot
    spec = {"task": "hopper", "control_dt": 0.008}
    for uri in ("udp://127.0.0.1:9", "unitree://lo", "franka://127.0.0.1"):
        scheme = uri.split(":")[0]
        with pytest.raises(ValueError, match=f"a {scheme} robot runs on its own clock"):
            make_robot(uri, spec, RobotOptions(realtime=False))
        with pytest.raises(ValueError, match=f"perturbations apply to simulated robots, not to a {scheme}"):
            make_robot(uri, spec, RobotOptions(perturbation=Perturbation(params={"mass": 1.1})))
    with pytest.raises(ValueError, match="link keys apply to udp robots; Unitree.s DDS topics carry no key"):
        make_robot("unitree://lo", spec, RobotOptions(key=b"k" * 16))
