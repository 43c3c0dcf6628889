"""A Unitree G1 standing on the twin through ``unitree_hg`` messages.

The twin (``deploy.robots.unitree_server``, Menagerie's G1 of task ``g1-stand``) serves
``rt/lowstate`` / ``rt/lowcmd`` with the humanoid messages (35 motor slots, ``mode_machine``,
CRC) on DDS loopback, in a thread of this process so that its statistics come back. The runtime
(``simrl deploy``'s, with the safety layer) runs a scripted PD stand for ``--seconds``: a
``g1-stand`` checkpoint whose network outputs exactly zero (exported to ONNX), i.e. joint
targets at the stance keyframe with the checkpoint's PD gains, after a soft start from wherever
the robot is (no zero-torque phase: a humanoid folds without torque). Reported: the pelvis's
lowest height while the robot was under position commands (the twin's physics), the link and
loop statistics. The robot stands when that height stays above ``--min-height``.
"""

from __future__ import annotations

import json
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from simrl.core.machine import finish, machine_info


@dataclass
class Config:
    """Options of ``simrl bench stand``."""

    seconds: float = 10.0                     # seconds of the stand
    soft_start: float = 1.0                   # seconds to the stance pose
    domain: int = 91                          # DDS domain of the twin (loopback)
    min_height: float = 0.6                   # m: the pelvis must stay above this
    json: str | None = None                   # also write the results to this JSON file


def zero_checkpoint(out: Path) -> Path:
    """A g1-stand checkpoint whose actions are exactly zero (the PD stand), exported to ONNX."""
    import torch

    import envs
    from policies.checkpoint import save
    from policies.export import export
    from policies.networks import NetworkConfig, Policy
    task = envs.make_task("g1-stand")
    policy = Policy(task.observation_size, task.action_size, NetworkConfig(normalize_obs=False))
    with torch.no_grad():
        policy.actor[-1].weight.zero_()
        policy.actor[-1].bias.zero_()
    save(out, policy, task)
    export(out)
    return out


def run(config: Config) -> int:
    import deploy
    from deploy.robots.mujoco import SimConfig
    from deploy.robots.unitree_server import serve_unitree

    machine = machine_info(threads=1, packages=("simrl", "cyclonedds", "mujoco", "onnxruntime"))
    stop, out = threading.Event(), {}
    twin = threading.Thread(target=lambda: out.update(stats=serve_unitree(
        SimConfig("g1-stand"), "lo", config.domain, stop=stop.is_set)), daemon=True)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = zero_checkpoint(Path(tmp) / "g1-stand")
        twin.start()
        try:
            cfg = deploy.RuntimeConfig(end_on_termination=False, safety=deploy.SafetyConfig(
                zero_torque_s=0.0, soft_start_s=config.soft_start, stale_timeout_s=1.0))
            report = deploy.run(ckpt, f"unitree://lo?domain={config.domain}", config.seconds, config=cfg)
        finally:
            stop.set()
            twin.join(10)
    stats = out["stats"]
    stood = report.stop_reason is None and stats.min_base_height > config.min_height
    result = {
        "what": f"{config.seconds:g} s scripted PD stand (zero actions of a g1-stand checkpoint) of the "
                "Menagerie G1 on the Unitree twin over unitree_hg messages (DDS loopback), "
                f"simrl bench stand --seconds {config.seconds:g}",
        "machine": finish(machine),
        "stood": bool(stood), "min_pelvis_height_m": stats.min_base_height,
        "held_s": stats.held_s, "twin": asdict(stats), "report": report.as_dict(),
    }
    print(report.summary())
    print(f"twin: {stats.summary()}")
    print(f"G1 {'stood' if stood else 'did NOT stand'}: pelvis at least {stats.min_base_height:.3f} m "
          f"(threshold {config.min_height} m) over {stats.held_s:.1f} s under position commands")
    if config.json:
        Path(config.json).write_text(json.dumps(result, indent=2))
    return 0 if stood else 1
