"""``simrl sweep``: a grid and/or random search over ``simrl train`` options, run on Ray.

A spec (YAML or JSON) lists the options; scalars are fixed, lists are grid axes, one-key
mappings are random draws::

    options:
      task: hopper
      steps: 200000
      dr: [none, uniform]                           # grid axis
      seed: [0, 1, 2]                               # grid axis
      ppo.learning-rate: {loguniform: [1e-4, 1e-3]} # random draw (also uniform, randint, choice)
    samples: 2                                      # random draws, each crossed with the grid
    seed: 0                                         # seed of the draws
    out: runs/sweep-lr                              # any option below may be set in the spec too
    cpus-per-trial: 2
    eval-episodes: 50

``--set NAME=VALUE`` adds or replaces an option (VALUE in YAML: ``--set 'seed=[0,1]'``), so a
sweep needs no file. Each trial is a ``simrl train`` run in ``OUT/trials/LABEL-HASH`` (the hash
of its resolved config); every trial's options are validated before anything starts. A trial
whose ``final/`` is written is never run again; rerunning the same sweep after a crash or
Ctrl-C resumes the unfinished ones from their last checkpoint (``--checkpoint-every``). Trials
run as Ray tasks with ``--cpus-per-trial`` CPUs (and torch threads) and ``--gpus-per-trial``
GPUs each: a local Ray is started in this process, or ``--address HOST:PORT`` joins an
existing cluster (the sweep directory must then be on a filesystem every node shares).
Results: ``OUT/results.csv`` and ``OUT/results.json`` (options, final return and success,
steps, wall time, evaluation, status, node); ``tensorboard --logdir OUT`` shows every trial.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml
from tyro.conf import Positional, UseAppendAction

from simrl.cli import command, main, parse
from simrl.cli.train import resolve, with_aliases
from simrl.core.config import require
from simrl.sweep import (Resources, SweepSpec, Trial, count_statuses, expand, make_trials,
                         option_argv, run_trials, varied, write_table)
from simrl.core.spec import file_sha256
from simrl.train import CONFIG_FILE, config_to_dict, find_resume_checkpoint, resolve_dr

# Train options a sweep owns (each trial's directory, its resume).
RESERVED = ("out", "resume")


@dataclass
class SweepArgs:
    """The sweep: a spec file and/or options."""

    spec: Positional[str | None] = None   # YAML or JSON spec (options, samples, seed, and any option below)
    set: UseAppendAction[tuple[str, ...]] = ()  # NAME=VALUE (repeat --set for more): a train option of every trial (VALUE in YAML: a list is a grid axis, {uniform: [lo, hi]} a draw); replaces the spec's
    samples: int = 1                      # random draws, each crossed with the grid
    seed: int = 0                         # seed of the random draws
    out: str = ""                         # sweep directory; default runs/sweep-{spec name}
    address: str = ""                     # an existing Ray cluster (HOST:PORT); empty: a local Ray started in this process
    cpus_per_trial: float = 1.0           # CPUs each trial reserves (its torch threads)
    gpus_per_trial: float = 0.0           # GPUs each trial reserves (0: trains on the CPU)
    object_store_mb: int = 0              # local Ray's object store (MB); 0: Ray's default
    ray_tmp: str = ""                     # local Ray's session directory; empty: Ray's default
    eval_episodes: int = 0                # after training, simrl eval each final checkpoint on this many episodes (0: no eval)
    eval_dr: str = "none"                 # the eval's --dr
    rank_real_logs: str = ""              # after all trials, simrl rank the final checkpoints against these real logs (OUT/rank)
    rank_options: str = ""                # more simrl rank options, one string (--rank-options="--sim.episodes 8")
    dry_run: bool = False                 # list the trials and exit
    progress: bool = True                 # pending/running/done/failed display

    def validate(self) -> None:
        require(self.samples >= 1, "samples", f"must be >= 1, got {self.samples}")
        require(self.cpus_per_trial > 0, "cpus_per_trial", f"must be > 0, got {self.cpus_per_trial}")
        require(self.gpus_per_trial >= 0, "gpus_per_trial", f"must be >= 0, got {self.gpus_per_trial}")
        require(self.eval_episodes >= 0, "eval_episodes", f"must be >= 0, got {self.eval_episodes}")
        for item in self.set:
            require("=" in item, "set", f"use NAME=VALUE, got {item!r}")


def load_spec(path: str) -> dict[str, Any]:
    """A spec file as a mapping (YAML, of which JSON is a subset); ValueError naming the file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"spec {path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"spec {path}: not a readable YAML/JSON file ({str(exc).splitlines()[0]})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"spec {path}: expected a mapping with options, got a {type(data).__name__}")
    return data


def spec_defaults(data: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the spec's train options, its settings as SweepArgs field values); an unknown key is
    an error naming it."""
    names = {f.name for f in fields(SweepArgs)} - {"spec", "set"}
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"spec {path}: options: expected a mapping {{option: value}}")
    settings: dict[str, Any] = {}
    for key, value in data.items():
        if key == "options":
            continue
        name = str(key).replace("-", "_")
        if name not in names:
            raise ValueError(f"spec {path}: unknown key {key!r} (use options, "
                             f"{', '.join(sorted(n.replace('_', '-') for n in names))})")
        settings[name] = tuple(value) if isinstance(value, list) else value
    return dict(options), settings


def resolved_config(options: dict[str, Any]) -> dict[str, Any]:
    """The run config ``simrl train`` would build from the trial options (validated: a bad
    option is a ValueError naming it)."""
    bad = [k for k in options if k in RESERVED]
    if bad:
        raise ValueError(f"--{bad[0]}: set by the sweep for each trial; remove it from the options")
    cfg = resolve(with_aliases(option_argv(options)))
    resolved = config_to_dict(cfg)
    if cfg.train.dr != "doraemon":
        resolve_dr(cfg.train.dr)  # none, uniform or a readable distribution file
        if Path(cfg.train.dr).is_file():  # the file's content is part of the trial
            resolved["dr_file_sha256"] = file_sha256(Path(cfg.train.dr))
    return resolved


def train_trial(trial: Trial, context: dict[str, Any]) -> dict[str, Any]:
    """Runs one trial in a Ray worker: ``simrl train`` into its directory (resuming from the
    last complete checkpoint when the directory holds an interrupted run), then ``simrl eval``
    of ``final/`` when ``context["eval_episodes"]``; returns the final checkpoint's path."""
    d = trial.directory
    extra: list[str] = []   # the progress display writes a plain line every 10 s into train.log
    if "threads" not in trial.options:
        extra += ["--threads", str(max(1, int(context.get("cpus_per_trial", 1))))]
    if "device" not in trial.options and not context.get("gpus_per_trial"):
        extra += ["--device", "cpu"]
    final = d / "final"
    resumed = None
    if not (final / "spec.json").exists():
        if (d / CONFIG_FILE).exists():
            try:
                run_dir, checkpoint, _ = find_resume_checkpoint(d)
                resumed = str(checkpoint)
            except (ValueError, FileNotFoundError):  # no complete checkpoint: start over
                for name in (CONFIG_FILE, "tb", "checkpoints", "final"):
                    p = d / name
                    shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        argv = (["train", "--resume", str(d), *extra] if resumed
                else ["train", *trial.argv(), "--out", str(d), *extra])
        print(f"simrl {' '.join(argv)}", flush=True)
        _check(main(argv), "train", d)
    episodes = int(context.get("eval_episodes", 0))
    if episodes and not (d / "eval.json").exists():
        _check(main(["eval", "--checkpoint", str(final), "--episodes", str(episodes), "--dr", context.get("eval_dr", "none"),
                     "--json", str(d / "eval.json")]), "eval", d)
    return {"final": str(final), "resumed_from": resumed}


def _check(status: int, what: str, directory: Path) -> None:
    if status != 0:
        sys.stderr.flush()
        lines = [l for l in (directory / "train.log").read_text().splitlines() if l.strip()]
        raise RuntimeError(f"simrl {what} exited with status {status}: {lines[-1] if lines else ''}")


def sweep_trials(options: Sequence[dict[str, Any]], names: Sequence[str], out: Path,
                 resources: Resources, eval_episodes: int = 0, eval_dr: str = "none",
                 show_progress: bool = True, then: Callable[[Trial], Any] | None = None,
                 ) -> tuple[list[Trial], list[dict[str, Any]]]:
    """Validates and runs the trials of ``options`` (``names``: the varied ones) in ``out``;
    writes the result table. The command and the benches share it. ``then(trial)``: follow-up
    work on each trial as it finishes (see :func:`simrl.sweep.run_trials`). Returns the trials
    and the table's rows."""
    trials = make_trials(options, names, out, resolved_config)
    context = {"cpus_per_trial": resources.cpus_per_trial, "gpus_per_trial": resources.gpus_per_trial,
               "eval_episodes": eval_episodes, "eval_dr": eval_dr}
    try:
        run_trials(trials, train_trial, resources, context, show_progress=show_progress, then=then)
    finally:  # the table also after a Ctrl-C: what finished so far
        rows = write_table(trials, out)
    return trials, rows


@command("sweep", help="grid/random search over simrl train options on Ray (resumable, one results table)")
def run(argv: list[str]) -> int:
    first = parse(SweepArgs, argv, "simrl sweep", __doc__)
    options: dict[str, Any] = {}
    if first.spec:
        options, settings = spec_defaults(load_spec(first.spec), first.spec)
        args = parse(SweepArgs, argv, "simrl sweep", __doc__, default=replace(SweepArgs(), **settings))
    else:
        args = first
    for item in args.set:
        name, _, text = item.partition("=")
        try:
            options[name.strip().lstrip("-")] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {item}: VALUE is not YAML ({str(exc).splitlines()[0]})") from None
    if not options:
        raise ValueError("no options: give a spec file or --set NAME=VALUE")
    spec = SweepSpec(options, args.samples, args.seed)
    spec.validate()
    out = Path(args.out or f"runs/sweep-{Path(args.spec).stem if args.spec else 'cli'}")
    trials = make_trials(expand(spec), varied(spec), out, resolved_config)
    done = sum(t.done for t in trials)
    print(f"sweep {out}: {len(trials)} trials ({done} done), "
          f"{args.cpus_per_trial:g} CPU{'' if args.gpus_per_trial == 0 else f' + {args.gpus_per_trial:g} GPU'}"
          f" per trial, Ray {args.address or 'local (in this process)'}")
    if args.dry_run:
        for t in trials:
            print(f"  {t.trial_id} {'done   ' if t.done else 'pending'} {t.label or '(fixed options)'}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(
        {"options": options, "samples": args.samples, "seed": args.seed,
         "trials": [{"trial_id": t.trial_id, "directory": t.directory.name, "options": t.options}
                    for t in trials]}, indent=2, default=str))
    resources = Resources(args.cpus_per_trial, args.gpus_per_trial, args.address or None,
                          args.object_store_mb, args.ray_tmp or None)
    trials, rows = sweep_trials(expand(spec), varied(spec), out, resources, args.eval_episodes,
                                args.eval_dr, args.progress)
    counts = count_statuses(trials)
    _print_table(rows, varied(spec))
    for row in rows:
        if row["status"] == "failed":
            print(f"failed: {row['directory']}: {row['error']} (log: train.log there)")
    print(f"{counts['done']} done, {counts['failed']} failed of {len(trials)}; "
          f"results: {out / 'results.csv'}, {out / 'results.json'}; tensorboard --logdir {out}")
    if args.rank_real_logs:
        finals = [str(t.directory / "final") for t in trials if t.done]
        if len(finals) < 2:
            raise ValueError("--rank-real-logs: fewer than two finished trials to rank")
        status = main(["rank", *finals, "--real-logs", args.rank_real_logs, "--out", str(out / "rank"),
                       *shlex.split(args.rank_options)])
        if status != 0:
            return status
    return 0 if counts["failed"] == 0 else 1


def _print_table(rows: list[dict[str, Any]], names: Sequence[str]) -> None:
    cols = [*names, "status", "final_return", "success_rate", "eval_return", "wall_time_s"]
    cols = [c for c in cols if any(r.get(c) is not None for r in rows)]

    def cell(v: Any) -> str:
        return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    table = [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
