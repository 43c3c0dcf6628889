"""The exported policy on the robot computer: ``policy.onnx`` run with onnxruntime, under the
contract of :mod:`simrl.core.onnx_contract`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from simrl.core.onnx_contract import INPUT, META_ACT, META_OBS, META_SHA, ONNX_FILE, OUTPUTS
from simrl.core.spec import POLICY_FILE, file_sha256


class OnnxPolicy:
    """``action = policy(obs)`` for one raw observation (obs_dim,), on one CPU thread."""

    def __init__(self, checkpoint: str | os.PathLike, spec: dict):
        import onnxruntime as ort
        root = Path(checkpoint)
        path = root / ONNX_FILE
        if not path.exists():
            raise ValueError(f"checkpoint {root}: no {ONNX_FILE}; run `simrl export --checkpoint "
                             f"{root} --format onnx` first")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        weights = root / POLICY_FILE
        if weights.exists() and meta.get(META_SHA) != file_sha256(weights):
            raise ValueError(f"{path} was exported from other weights than {weights} (stale "
                             "export); run `simrl export` again")
        for key, names in ((META_OBS, spec["observation"]["names"]), (META_ACT, spec["action"]["names"])):
            if json.loads(meta.get(key, "[]")) != list(names):
                raise ValueError(f"{path}: {key} differ from the checkpoint spec's")
        self.obs_dim, self.act_dim = len(spec["observation"]["names"]), len(spec["action"]["names"])
        self._input = np.zeros((1, self.obs_dim), dtype=np.float32)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self._input[0] = obs
        return self.session.run(OUTPUTS[:1], {INPUT: self._input})[0][0].astype(np.float64)
