"""What runs on the robot computer: the fixed-rate runtime, its safety layer, robot back-ends and the log recorder (numpy, mujoco and onnxruntime; no torch).

>>> import deploy
>>> report = deploy.run("runs/go1/final", robot="mujoco", duration=10, log_path="go1.mcap",
...                     perturb="proxy.json")
>>> print(report.summary()); report.real_return
"""

from deploy.robots import Perturbation, Robot, make_robot
from deploy.runtime import DeployReport, Runtime, RuntimeConfig, run
from deploy.safety import SafetyConfig

__all__ = ["run", "Runtime", "RuntimeConfig", "DeployReport", "SafetyConfig", "Robot",
           "Perturbation", "make_robot"]
