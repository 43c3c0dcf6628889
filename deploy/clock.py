"""Fixed-rate timing on a monotonic clock: absolute deadlines, deadline misses and period jitter.

``Rate.wait`` sleeps until the next absolute deadline ``t0 + k * period`` (never "period after
the last wake-up", so errors do not accumulate). A loop that overruns does not burst to catch
up: ``wait`` returns how many periods elapsed, counts the skipped ones as deadline misses and
re-aligns to the next future deadline. The physics loop of the MuJoCo robot uses that count to
step the simulation as often as real time demands.
"""

from __future__ import annotations

import gc
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np


@dataclass
class TimingStats:
    """Period statistics of a fixed-rate loop, in milliseconds."""

    ticks: int
    deadline_misses: int
    jitter_p50_ms: float      # |actual period - nominal period|, median
    jitter_p99_ms: float
    jitter_max_ms: float
    period_mean_ms: float


class Rate:
    """Sleeps to absolute deadlines of a fixed ``period`` (seconds).

    ``spin``: the last ``spin`` seconds before a deadline are busy-waited instead of slept,
    trading a little CPU for wake-up precision. ``history``: how many recent periods the jitter
    statistics cover.
    """

    def __init__(self, period: float, spin: float = 0.0, history: int = 1 << 16):
        if period <= 0:
            raise ValueError(f"period must be positive, got {period}")
        self.period, self.spin = float(period), max(0.0, float(spin))
        self.deadline_misses = 0
        self.ticks = 0
        self._periods = np.zeros(history)
        self._t0: float | None = None
        self._k = 0
        self._last_wake = 0.0

    def start(self) -> float:
        """Sets tick 0 at now; returns it."""
        self._t0 = self._last_wake = time.perf_counter()
        self._k = 0
        return self._t0

    def wait(self) -> int:
        """Sleeps until the next deadline; returns the periods elapsed since the last wait
        (1 when on time, more after an overrun, whose skipped deadlines count as misses)."""
        if self._t0 is None:
            self.start()
            return 1
        now = time.perf_counter()
        due = int((now - self._t0) / self.period) - self._k
        if due >= 1:  # the deadline of the next tick has already passed
            self.deadline_misses += due
            self._k += due
        deadline = self._t0 + (self._k + 1) * self.period
        remaining = deadline - now - self.spin
        if remaining > 0:
            time.sleep(remaining)
        while time.perf_counter() < deadline:
            pass
        self._k += 1
        wake = time.perf_counter()
        self._periods[self.ticks % len(self._periods)] = wake - self._last_wake
        self._last_wake = wake
        self.ticks += 1
        return max(due, 0) + 1

    def elapsed(self) -> float:
        """Seconds since tick 0."""
        return 0.0 if self._t0 is None else time.perf_counter() - self._t0

    def stats(self) -> TimingStats:
        periods = self._periods[:min(self.ticks, len(self._periods))]
        if not len(periods):
            return TimingStats(self.ticks, self.deadline_misses, 0.0, 0.0, 0.0, 0.0)
        jitter = np.abs(periods - self.period) * 1e3
        return TimingStats(self.ticks, self.deadline_misses, float(np.percentile(jitter, 50)),
                           float(np.percentile(jitter, 99)), float(jitter.max()),
                           float(periods.mean() * 1e3))


@contextmanager
def realtime_scheduling(priority: int | None = None) -> Iterator[None]:
    """For a real-time loop: no garbage-collector pauses inside (existing objects frozen,
    collection off), and the SCHED_FIFO ``priority`` (1-99; needs CAP_SYS_NICE) when given.
    Restores both on exit."""
    old = os.sched_getscheduler(0), os.sched_getparam(0)
    if priority is not None:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        if priority is not None:
            os.sched_setscheduler(0, old[0], old[1])
