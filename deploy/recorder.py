"""The real-log recorder of deploy runs: one MCAP file per run, written through
:mod:`simrl.core.logs` from a background thread so the control loop never waits on the disk.

Per control step: time, the robot-state record (plus ``motor_pos``/``motor_vel``, the
commanded actuator inputs ``ctrl``, the robot's clock ``robot_time`` and, when the task reward
can be evaluated on the robot's readings, ``reward``), the observation, the action the robot
executed (after the safety layer) and the safety flags.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from simrl.core.logs import LogMeta, LogWriter


class Recorder:
    """``record`` queues a step, ``close`` drains the queue and closes the file (idempotent).
    ``chunk_steps``: steps per compressed chunk (what a crash can lose at most)."""

    def __init__(self, path: str | Path, meta: LogMeta, chunk_steps: int = 50, threaded: bool = True):
        self.path = Path(path)
        self._writer = LogWriter(self.path, meta, chunk_steps=chunk_steps)
        self._queue: queue.SimpleQueue | None = queue.SimpleQueue() if threaded else None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._drain, name="simrl-recorder", daemon=True)
            self._thread.start()

    def record(self, t: float, step: int, state: Mapping[str, np.ndarray], obs: np.ndarray,
               action: np.ndarray, safety: Mapping[str, bool | int]) -> None:
        item = (t, step, {k: np.array(v) for k, v in state.items()}, np.array(obs), np.array(action),
                dict(safety))
        if self._queue is None:
            self._writer.write(*item)
        else:
            if self._error is not None:
                raise RuntimeError(f"recorder for {self.path} failed: {self._error}") from self._error
            self._queue.put(item)

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write(*item)
                except BaseException as exc:  # reported to the control loop on its next record
                    self._error = exc

    def close(self, end: Mapping[str, str] | None = None) -> None:
        """Writes the queued steps, then ``end`` (how the run ended: the log's closing
        record) and the footer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._writer.close(end)
        if self._error is not None:
            raise RuntimeError(f"recorder for {self.path} failed: {self._error}") from self._error


def log_meta(spec: Mapping[str, Any], observation_names: Sequence[str], robot_name: str, source: str,
             policy_id: str, extra: Mapping[str, str] | None = None) -> LogMeta:
    """Metadata of a deploy run of the checkpoint ``spec`` on ``robot_name``. The log holds the
    task's observations (``observation_names``), whatever history or base action the network
    also saw, so logs of every kind of policy read alike."""
    return LogMeta(robot=str(spec["robot"]["model"]), task=spec["task"],
                   control_period=float(spec["control_dt"]),
                   observation_names=list(observation_names),
                   action_names=spec["action"]["names"], policy_id=policy_id, source=source,
                   extra={"backend": robot_name, **(extra or {})})
