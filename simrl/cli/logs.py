"""``simrl logs info LOG...``, ``simrl logs recover --src CUT.mcap --dst WHOLE.mcap`` and
``simrl logs video LOG --out FILE.mp4``: look at real logs without opening Python, make a log cut
mid-chunk (a killed robot computer) readable by every MCAP reader (Foxglove,
``mcap.reader.make_reader``), and render a log to an MP4 (the logged robot state replayed into
the visual model, with the command, the return so far and the safety flags drawn on the frames).
Torch-free: runs on the robot computer."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

from simrl.cli import command, parse
from simrl.core.logs import LogExistsError, TruncatedLogWarning, read_log, recover_log


@dataclass
class InfoArgs:
    """Real logs to summarize."""

    logs: Annotated[tuple[str, ...], tyro.conf.Positional]  # .mcap files
    allow_nan: bool = False              # read logs holding NaN readings (refused by default)

    def validate(self) -> None:
        if not self.logs:
            raise ValueError("give one or more .mcap logs")


@dataclass
class RecoverArgs:
    """A truncated log and where its whole chunks go."""

    src: str                             # the truncated .mcap
    dst: str                             # the complete .mcap to write (never over an existing file)


@dataclass
class VideoArgs:
    """A real log to render and where the MP4 goes."""

    log: Annotated[str, tyro.conf.Positional]  # .mcap file
    out: str                             # MP4 file to write (not over an existing file unless --overwrite)
    fps: float = 30.0                    # frames per second wanted (a whole number of control steps per frame)
    width: int = 320                     # pixels
    height: int = 240                    # pixels
    model: str | None = None             # MJCF to render instead of the log's robot model (meta.robot)
    overwrite: bool = False              # replace an existing --out file
    allow_nan: bool = False              # read logs holding NaN readings (refused by default)


def render_video(log_path: str, out: str, fps: float = 30.0, width: int = 320, height: int = 240,
                 model: str | None = None, overwrite: bool = False, allow_nan: bool = False) -> int:
    """Renders ``log_path`` to ``out`` and prints what was written (``simrl logs video`` and
    ``simrl deploy --video``)."""
    from envs.render import VideoConfig, render_log

    if Path(out).exists() and not overwrite:
        raise LogExistsError(f"--out {out}: file exists (use --overwrite to replace it)")
    config = VideoConfig(width, height, fps)
    config.validate()
    log = read_log(log_path, allow_nan=allow_nan)
    result = render_log(log, out, config, model=model)
    notes = f" ({'; '.join(result.notes)})" if result.notes else ""
    print(f"wrote {result.path}: {result.frames} frames at {result.fps:.3g} fps from {len(log)} steps of "
          f"{log_path}{notes}")
    return 0


def _video(argv: list[str]) -> int:
    args = parse(VideoArgs, argv, "simrl logs video", __doc__)
    return render_video(args.log, args.out, args.fps, args.width, args.height, args.model,
                        args.overwrite, args.allow_nan)


def _info(argv: list[str]) -> int:
    args = parse(InfoArgs, argv, "simrl logs info", __doc__)
    for path in args.logs:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TruncatedLogWarning)
            log = read_log(path, allow_nan=args.allow_nan)
        m = log.meta
        # flags: steps on which they were raised; counters (packets lost, ...): the run's total
        events = {k: int(np.count_nonzero(v)) if v.dtype == bool else int(v.max())
                  for k, v in log.safety.items() if np.count_nonzero(v)}
        span = float(log.t[-1] - log.t[0]) if len(log) else 0.0
        print(f"{path}: {m.task} on {m.robot} ({m.source}), policy {m.policy_id}, {len(log)} steps "
              f"over {span:.2f} s at {1.0 / m.control_period:g} Hz"
              + (", TRUNCATED: read up to the last whole chunk" if log.truncated else ""))
        print(f"  observation {len(m.observation_names)}, action {len(m.action_names)}, state fields "
              f"{', '.join(sorted(log.state))}")
        print(f"  safety events: {', '.join(f'{k} {v}' for k, v in events.items()) or 'none'}")
        if log.end:
            detail = log.end.get("stop_detail")
            print(f"  ended: {log.end.get('stop_reason', '?')}" + (f" ({detail})" if detail else ""))
        for w in caught:
            if issubclass(w.category, TruncatedLogWarning):
                print(f"  {w.message}")
    return 0


def _recover(argv: list[str]) -> int:
    args = parse(RecoverArgs, argv, "simrl logs recover", __doc__)
    steps = recover_log(args.src, args.dst)
    print(f"wrote {args.dst}: {steps} steps from the whole chunks of {args.src}")
    return 0


ACTIONS = {"info": _info, "recover": _recover, "video": _video}


@command("logs", help="summarize real logs; recover a truncated one; render one to an MP4")
def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        if not argv:
            raise ValueError(f"give an action: {', '.join(ACTIONS)}")
        return 0
    if argv[0] not in ACTIONS:
        raise ValueError(f"unknown action {argv[0]!r}; use one of: {', '.join(ACTIONS)}")
    return ACTIONS[argv[0]](argv[1:])
