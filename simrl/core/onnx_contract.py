"""The ONNX input/output contract between :mod:`policies.export` (which writes ``policy.onnx``)
and the robot runtime (:mod:`deploy.policy`, which runs it with onnxruntime):

* input ``obs``: float32 ``(batch, obs_dim)``, the *raw* observation vector in the order of the
  spec's observation names (normalization is inside the graph);
* output ``action``: float32 ``(batch, act_dim)``, the deterministic action in policy units,
  clipped to [-1, 1] (what ``task.action_to_ctrl`` takes);
* output ``scaled_action``: ``offset + scale * action`` with the spec's action scale and offset:
  joint position targets (``joint_position`` actions), actuator commands (``actuator``) or the
  per-step target change (``joint_position_delta``), for runtimes other than this one;
* metadata: ``simrl.policy_sha256`` (sha256 of the ``policy.pt`` it was exported from; a
  mismatch means the export is stale), ``simrl.task``, ``simrl.observation_names``,
  ``simrl.action_names`` (JSON lists).
"""

ONNX_FILE = "policy.onnx"
INPUT = "obs"
OUTPUTS = ("action", "scaled_action")
META_SHA = "simrl.policy_sha256"
META_TASK = "simrl.task"
META_OBS = "simrl.observation_names"
META_ACT = "simrl.action_names"
