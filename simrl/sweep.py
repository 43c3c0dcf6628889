"""Sweeps: many training runs (trials) from one spec, run on Ray, gathered into one table.

A spec's ``options`` map ``simrl train`` options (without ``--``) to values:

* a scalar is a fixed option (``task: hopper``, ``steps: 4000``);
* a list is a grid axis (``dr: [none, uniform]``, ``seed: [0, 1, 2]``); the trials are the
  product of all axes;
* a one-key mapping is a random draw: ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``,
  ``{randint: [lo, hi]}`` (both ends included) or ``{choice: [a, b, ...]}``; ``samples`` draws
  (seeded by ``seed``) are each crossed with the whole grid, so the grid's values are compared
  under the same drawn values;
* ``{value: X}`` is X fixed, for a list-valued option (``network.actor-hidden: {value: [64, 64]}``).

A trial's identity is the hash of its resolved run configuration (every field of
``config.json`` but where and how it runs: ``train.out``, ``train.progress``,
``train.threads``, ``train.device``, ``train.checkpoint_every``), so the same trial is the same
directory whatever the spec's order or spelling. Its directory ``SWEEP/trials/LABEL-HASH``
holds the run (``config.json``, ``tb/``, checkpoints, ``final/``) and ``trial.json``, whose
``status`` is ``done`` once ``final/`` is written: a done trial is never run again; an unfinished
one resumes from its last checkpoint. :func:`run_trials` runs them as Ray tasks with
``num_cpus``/``num_gpus`` each, through a function the caller hands it (the command layer hands
``simrl train``), and :func:`write_table` gathers ``results.csv`` and ``results.json``.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
import re
import socket
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from simrl.core.config import require
from simrl.core.progress import progress

TRIAL_FILE = "trial.json"
TRIALS_DIR = "trials"
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
# Run-config fields that say where and how a trial runs, not what it trains.
NOT_IDENTITY = ("train.out", "train.progress", "train.threads", "train.device",
                "train.checkpoint_every", "train.trust_pickle")
STATUSES = ("pending", "running", "done", "failed")


@dataclass
class SweepSpec:
    """The search space: ``options`` (fixed values, grid axes and random draws, see the module
    doc), ``samples`` random draws crossed with the grid, and the draws' ``seed``."""

    options: dict[str, Any] = field(default_factory=dict)
    samples: int = 1
    seed: int = 0

    def validate(self) -> None:
        require(self.samples >= 1, "samples", f"must be >= 1, got {self.samples}")
        for name, value in self.options.items():
            require(isinstance(name, str) and name and not name.startswith("-"), f"options.{name}",
                    "an option name without leading dashes (ppo.learning-rate)")
            require(not (isinstance(value, list) and not value), f"options.{name}",
                    "an empty grid axis")
            if isinstance(value, dict):
                _check_draw(name, value)
        require(any(_kind(v) == "random" for v in self.options.values()) or self.samples == 1,
                "samples", f"is {self.samples} but no option is drawn at random")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "grid"
    if isinstance(value, dict):
        return "fixed" if set(value) == {"value"} else "random"
    return "fixed"


def _number(value: Any) -> Any:
    """A numeric string (YAML reads ``1e-4`` as one) as a float; anything else unchanged."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_draw(name: str, value: dict) -> None:
    where = f"options.{name}"
    if set(value) == {"value"}:
        return
    require(len(value) == 1 and next(iter(value)) in DISTRIBUTIONS, where,
            f"a random draw is one of {{{', '.join(DISTRIBUTIONS)}: ...}} or {{value: X}}; got {value!r}")
    kind, args = next(iter(value.items()))
    if kind != "choice" and isinstance(args, list):
        args = [_number(a) for a in args]
    require(isinstance(args, list) and args, where, f"{kind} needs a list, got {args!r}")
    if kind == "choice":
        return
    require(len(args) == 2 and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args),
            where, f"{kind} needs [low, high], got {args!r}")
    lo, hi = args
    require(lo <= hi, where, f"{kind} needs low <= high, got {args!r}")
    if kind == "loguniform":
        require(lo > 0, where, f"loguniform needs low > 0, got {args!r}")
    if kind == "randint":
        require(all(float(a).is_integer() for a in args), where, f"randint needs integers, got {args!r}")


def _draw(kind: str, args: list, rng: np.random.Generator) -> Any:
    if kind == "uniform":
        return float(rng.uniform(args[0], args[1]))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
    if kind == "randint":
        return int(rng.integers(int(args[0]), int(args[1]) + 1))
    return args[int(rng.integers(len(args)))]


def expand(spec: SweepSpec) -> list[dict[str, Any]]:
    """The trials' options, in order: for each of ``samples`` random draws (all drawn options
    in name order from one generator seeded with ``spec.seed``), the product of the grid axes
    (in the order the spec lists them), plus the fixed options."""
    spec.validate()
    fixed = {k: (v["value"] if isinstance(v, dict) else v)
             for k, v in spec.options.items() if _kind(v) == "fixed"}
    axes = [(k, v) for k, v in spec.options.items() if _kind(v) == "grid"]
    drawn = sorted(k for k, v in spec.options.items() if _kind(v) == "random")
    rng = np.random.default_rng(spec.seed)
    trials = []
    for _ in range(spec.samples):
        sample = {}
        for name in drawn:
            (kind, args), = spec.options[name].items()
            sample[name] = _draw(kind, args if kind == "choice" else [_number(a) for a in args], rng)
        for values in itertools.product(*(v for _, v in axes)):
            trials.append({**fixed, **sample, **{k: x for (k, _), x in zip(axes, values)}})
    return trials


def varied(spec: SweepSpec) -> list[str]:
    """The option names that differ between trials (grid axes and random draws)."""
    return [k for k, v in spec.options.items() if _kind(v) != "fixed"]


def option_argv(options: Mapping[str, Any]) -> list[str]:
    """``{"ppo.learning-rate": 3e-4, "network.actor-hidden": [64, 64]}`` as ``simrl train``
    words: ``--ppo.learning-rate 0.0003 --network.actor-hidden 64 64``; a mapping value is one
    option per key, as tyro spells a dict field: ``{"task.randomization": {"friction": [0.1,
    2]}}`` is ``--task.randomization.friction 0.1 2``."""
    argv: list[str] = []
    for name, value in options.items():
        if isinstance(value, Mapping):
            argv.extend(option_argv({f"{name}.{k}": v for k, v in value.items()}))
            continue
        argv.append(f"--{name}")
        if isinstance(value, (list, tuple)):
            argv.extend(_word(v) for v in value)
        else:
            argv.append(_word(value))
    return argv


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def identity(resolved: Mapping[str, Any]) -> str:
    """The hash of a resolved run config (``config.json``'s dict) without :data:`NOT_IDENTITY`."""
    flat = _flatten(resolved)
    kept = {k: v for k, v in flat.items() if k not in NOT_IDENTITY}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and prefix == "":
            out.update(_flatten(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@dataclass
class Trial:
    """One training run of a sweep: its options, identity and directory."""

    index: int
    options: dict[str, Any]
    trial_id: str
    directory: Path
    label: str = ""

    def argv(self) -> list[str]:
        return option_argv(self.options)

    def state(self) -> dict[str, Any]:
        """``trial.json`` (status ``pending`` when there is none)."""
        return read_state(self.directory)

    @property
    def done(self) -> bool:
        return self.state().get("status") == "done" and (self.directory / "final").is_dir()


def read_state(directory: Path) -> dict[str, Any]:
    path = Path(directory) / TRIAL_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"status": "pending"}


def write_state(directory: Path, state: Mapping[str, Any]) -> None:
    """``trial.json`` written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{TRIAL_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(state, indent=2, default=str))
    os.replace(tmp, directory / TRIAL_FILE)


def make_trials(options: Sequence[dict[str, Any]], names: Sequence[str], sweep_dir: Path,
                resolve: Callable[[dict[str, Any]], Mapping[str, Any]]) -> list[Trial]:
    """Trials for ``options`` (from :func:`expand`): ``resolve`` gives each one's resolved run
    config (raising ValueError on a bad option, which is reported with the trial's options);
    ``names``: the varied options that make the directory label. Two trials that resolve the
    same are one trial."""
    trials: list[Trial] = []
    seen: dict[str, int] = {}
    for i, opts in enumerate(options):
        label = ",".join(f"{k}={_short(opts[k])}" for k in names if k in opts)
        try:
            resolved = resolve(opts)
        except ValueError as exc:
            raise ValueError(f"trial {i} ({label or 'fixed options'}): {exc}") from None
        tid = identity(resolved)
        if tid in seen:
            continue
        seen[tid] = i
        slug = re.sub(r"[^A-Za-z0-9._=,-]+", "_", label)[:80].strip("_")
        directory = Path(sweep_dir) / TRIALS_DIR / (f"{slug}-{tid}" if slug else tid)
        trials.append(Trial(len(trials), dict(opts), tid, directory, label))
    return trials


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:6]
    text = str(value)
    return Path(text).stem if "/" in text else text


# -- running ------------------------------------------------------------------------------------

TrialFn = Callable[[Trial, dict[str, Any]], dict[str, Any]]


@dataclass
class Resources:
    """What each trial asks Ray for, and which Ray."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None          # None: a local Ray started in this process
    object_store_mb: int = 0            # local Ray only; 0: Ray's default
    temp_dir: str | None = None         # local Ray only: session files

    def validate(self) -> None:
        require(self.cpus_per_trial > 0, "cpus_per_trial", f"must be > 0, got {self.cpus_per_trial}")
        require(self.gpus_per_trial >= 0, "gpus_per_trial", f"must be >= 0, got {self.gpus_per_trial}")
        require(self.object_store_mb >= 0, "object_store_mb", f"must be >= 0, got {self.object_store_mb}")


def _execute(fn: TrialFn, trial: Trial, context: dict[str, Any]) -> dict[str, Any]:
    """Runs one trial (inside a Ray worker): marks it running, calls ``fn``, records the
    outcome in ``trial.json`` and returns it. The worker's output goes to ``TRIAL/train.log``."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    base = {"trial_id": trial.trial_id, "options": trial.options, "node": node,
            "host": socket.gethostname(), "pid": os.getpid()}
    write_state(trial.directory, {**base, "status": "running", "started": time.time()})
    t0 = time.perf_counter()
    log = open(trial.directory / "train.log", "a")
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = log
    try:
        result = fn(trial, context)
        state = {**base, **result, "status": "done", "run_seconds": round(time.perf_counter() - t0, 2)}
    except BaseException as exc:  # recorded, then the sweep goes on
        traceback.print_exc(file=log)
        state = {**base, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500],
                 "run_seconds": round(time.perf_counter() - t0, 2)}
    finally:
        sys.stdout, sys.stderr = saved
        log.close()
    write_state(trial.directory, state)
    return state


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``: a Ray task for any callable (a ``functools.partial`` too)."""
    return fn(*args)


def start_ray(resources: Resources) -> bool:
    """Connects to ``resources.address`` or starts a local Ray in this process (no dashboard);
    True when this call started it (then :func:`run_trials` shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local or loopback cluster
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if resources.address:
        ray.init(address=resources.address, **kwargs)
    else:
        if resources.object_store_mb:
            kwargs["object_store_memory"] = resources.object_store_mb * 1024 ** 2
        if resources.temp_dir:
            kwargs["_temp_dir"] = str(Path(resources.temp_dir).resolve())
        ray.init(include_dashboard=False, **kwargs)
    return True


@contextmanager
def _ray_batch(resources: Resources, bar: Any, start: bool = True) -> Iterator[list[Any]]:
    """A batch of Ray tasks: starts a local Ray when ``start`` and none is running, yields the
    list the caller puts its task refs in; Ctrl-C cancels those tasks and re-raises; closes
    ``bar`` and stops the Ray it started."""
    import ray

    started = start_ray(resources) if start else False
    refs: list[Any] = []
    try:
        yield refs
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
        if started:
            ray.shutdown()


def trial_slots(resources: Resources) -> int:
    """How many trials the connected Ray cluster holds at once with the trial resources."""
    import ray

    total = ray.cluster_resources()
    slots = int(total.get("CPU", 0) // resources.cpus_per_trial)
    if resources.gpus_per_trial:
        slots = min(slots, int(total.get("GPU", 0) // resources.gpus_per_trial))
    return max(1, slots)


def run_trials(trials: Sequence[Trial], fn: TrialFn, resources: Resources,
               context: dict[str, Any] | None = None, show_progress: bool = True,
               interval_s: float = 30.0, then: Callable[[Trial], Any] | None = None) -> list[dict[str, Any]]:
    """Runs every trial that is not done as a Ray task (``fn(trial, context)`` in a worker,
    with ``cpus_per_trial``/``gpus_per_trial``), showing pending/running/done/failed; returns
    each trial's ``trial.json`` in order. Ctrl-C cancels the running tasks (their checkpoints
    stay for the next run) and re-raises.

    ``then(trial)`` is follow-up work (evaluating a trial's checkpoints, say) run as a Ray task
    with the same resources as soon as that trial finishes; follow-ups go before trials not yet
    started, so results come in while the sweep runs and the cores a sweep's last trials leave
    idle do them. A failed follow-up is reported on stderr and the sweep goes on (the caller
    finds its output missing). The driver keeps as many tasks in flight as the cluster holds
    when the sweep starts (:func:`trial_slots`)."""
    import ray

    resources.validate()
    todo = [t for t in trials if not t.done]
    states: dict[str, dict[str, Any]] = {t.trial_id: t.state() for t in trials}
    bar = progress(len(trials), "sweep", unit="trial", initial=len(trials) - len(todo),
                   disable=not show_progress, interval_s=interval_s)
    with _ray_batch(resources, bar, start=bool(todo)) as refs:
        if not todo:
            return [t.state() for t in trials]
        options = {"num_cpus": resources.cpus_per_trial, "num_gpus": resources.gpus_per_trial, "max_retries": 0}
        run = ray.remote(_execute).options(**options)
        follow = ray.remote(_call).options(**options) if then else None
        fn_ref, then_ref = ray.put(fn), ray.put(then)
        for t in todo:
            write_state(t.directory, {**{k: v for k, v in t.state().items() if k != "status"},
                                      "trial_id": t.trial_id, "options": t.options, "status": "pending"})
        slots = trial_slots(resources)
        waiting, followups = list(todo), []
        in_flight: dict[Any, tuple[str, Trial]] = {}
        while waiting or followups or in_flight:
            while len(in_flight) < slots and (followups or waiting):
                kind, t = ("then", followups.pop(0)) if followups else ("trial", waiting.pop(0))
                ref = follow.remote(then_ref, t) if kind == "then" else run.remote(fn_ref, t, dict(context or {}))
                in_flight[ref] = (kind, t)
                refs.append(ref)
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            finished = 0
            for ref in ready:
                kind, t = in_flight.pop(ref)
                if kind == "then":
                    try:
                        ray.get(ref)
                    except Exception as exc:
                        print(f"follow-up of trial {t.directory.name} failed: {type(exc).__name__}: {exc}"[:800],
                              file=sys.stderr, flush=True)
                    continue
                finished += 1
                try:
                    states[t.trial_id] = ray.get(ref)
                except Exception as exc:  # the worker died (killed, out of memory)
                    states[t.trial_id] = {"trial_id": t.trial_id, "options": t.options,
                                          "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
                    write_state(t.directory, states[t.trial_id])
                if follow is not None and states[t.trial_id]["status"] == "done":
                    followups.append(t)
            counts: dict[str, int] = count_statuses(trials)
            if follow is not None:
                counts["follow-ups"] = sum(kind == "then" for kind, _ in in_flight.values())
            bar.set_postfix(counts, refresh=False)  # before update: its line shows it
            bar.update(finished)  # also when 0: a log gets its periodic line
    return [states[t.trial_id] if t in todo else t.state() for t in trials]


def map_on_ray(fn: Callable[..., Any], calls: Sequence[tuple], resources: Resources, desc: str = "",
               show_progress: bool = True) -> list[Any]:
    """``[fn(*args) for args in calls]`` as Ray tasks with the trial resources (so no more run at
    once than the machine or cluster holds), in order; for work that follows a sweep, such as
    evaluating every trial's checkpoints. Starts a local Ray when none is running (and stops
    it after). Ctrl-C cancels the running tasks and re-raises."""
    import ray

    resources.validate()
    if not calls:
        return []
    bar = progress(len(calls), desc, unit="task", disable=not show_progress)
    with _ray_batch(resources, bar) as refs:
        remote = ray.remote(_call).options(num_cpus=resources.cpus_per_trial,
                                           num_gpus=resources.gpus_per_trial, max_retries=0)
        fn_ref = ray.put(fn)
        refs.extend(remote.remote(fn_ref, *args) for args in calls)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            bar.update(len(ready))
        return ray.get(refs)


def count_statuses(trials: Sequence[Trial]) -> dict[str, int]:
    """Trials per status (``pending``, ``running``, ``done``, ``failed``) from ``trial.json``."""
    counts = {s: 0 for s in STATUSES}
    for t in trials:
        status = t.state().get("status", "pending")
        counts[status if status in counts else "pending"] += 1
    return counts


# -- the result table ---------------------------------------------------------------------------

RESULT_FIELDS = ("trial_id", "status", "final_return", "success_rate", "steps", "wall_time_s",
                 "eval_return", "eval_success", "node", "directory", "error")


def result_row(trial: Trial, state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One row of the table: the trial's options, then its training summary (from
    ``final/spec.json``), evaluation (``eval.json``) and status."""
    state = dict(state if state is not None else trial.state())
    row: dict[str, Any] = dict(trial.options)
    row.update({"trial_id": trial.trial_id, "status": state.get("status", "pending"),
                "directory": str(trial.directory), "node": state.get("node"),
                "error": state.get("error")})
    spec_file = trial.directory / "final" / "spec.json"
    if spec_file.exists():
        training = json.loads(spec_file.read_text()).get("training", {})
        row.update(final_return=training.get("mean_return"), success_rate=training.get("success_rate"),
                   steps=training.get("steps"), wall_time_s=training.get("wall_time_s"))
    eval_file = trial.directory / "eval.json"
    if eval_file.exists():
        ev = json.loads(eval_file.read_text())
        ev = ev[0] if isinstance(ev, list) and ev else ev
        if isinstance(ev, dict):
            row.update(eval_return=_get(ev, "return", "mean"), eval_success=_get(ev, "success_rate", "mean"))
    return row


def _get(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def write_table(trials: Sequence[Trial], sweep_dir: Path,
                states: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``results.csv`` and ``results.json`` in ``sweep_dir``: one row per trial (options first,
    then :data:`RESULT_FIELDS`); returns the rows."""
    rows = [result_row(t, None if states is None else states[i]) for i, t in enumerate(trials)]
    names: list[str] = []
    for t in trials:
        names += [k for k in t.options if k not in names]
    columns = names + [f for f in RESULT_FIELDS if f not in names]
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in columns})
    (sweep_dir / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    return rows


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value
