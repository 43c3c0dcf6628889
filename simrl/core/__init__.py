"""The torch-free core every layer builds on: config dataclasses to and from JSON
(:mod:`~simrl.core.config`), the checkpoint spec (:mod:`~simrl.core.spec`) and the ONNX
input/output contract (:mod:`~simrl.core.onnx_contract`), the real-log format
(:mod:`~simrl.core.logs`), the robot-state record (:mod:`~simrl.core.robot_state`), the
registries (:mod:`~simrl.core.registry`) and progress display (:mod:`~simrl.core.progress`).
It imports numpy, mcap and the standard library only, so the robot computer runs it."""
