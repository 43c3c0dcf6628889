"""The ``simrl`` command line.

Each command is one module of this package that registers itself in :data:`COMMANDS`::

    @command("export", help="export a checkpoint's policy to ONNX or TorchScript")
    def run(argv: list[str]) -> int:
        args = parse(ExportArgs, argv, "simrl export")    # a dataclass, parsed by tyro
        ...

Every module of this package is imported when a command is looked up; a module whose imports
are missing here (a robot computer has no torch) is listed as unavailable, so ``simrl deploy``
(whose module imports only the torch-free ``deploy`` side) runs without torch. Bad input (unknown options, invalid values, missing
files) ends in one line, ``simrl COMMAND: error: ...``, and exit status 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import pkgutil
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from simrl.core.config import validate
from simrl.core.registry import Registry

T = TypeVar("T")
PROG = "simrl"
DESCRIPTION = ("Sim-to-real robot learning: domain-randomized MuJoCo environments, PPO training, "
               "checkpoint ranking and a safe robot runtime.")


@dataclass(frozen=True)
class Command:
    """A ``simrl`` subcommand: ``run(argv)`` parses ``argv`` (the words after the command
    name) and returns the exit status."""

    name: str
    run: Callable[[list[str]], int]
    help: str


COMMANDS: Registry[Command] = Registry("command")
# Command modules that could not be imported here: module name -> the missing module.
UNAVAILABLE: dict[str, str] = {}
_discovered = False


def command(name: str, help: str) -> Callable:
    """Decorator on ``run(argv) -> int``: registers the command ``simrl NAME``."""

    def add(run: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
        old = COMMANDS._entries.get(name)
        same = old is not None and (old.run.__module__, old.run.__qualname__) == (
            run.__module__, run.__qualname__)
        COMMANDS.register(name, Command(name, run, help), replace=same)
        return run
    return add


def discover() -> None:
    """Imports every command module of this package once; records those whose third-party
    imports are missing in :data:`UNAVAILABLE`."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"{__name__}.{info.name}")
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if not top or top in ("simrl", "envs", "policies", "deploy"):
                raise
            UNAVAILABLE[info.name.replace("_", "-")] = exc.name or top


class UsageError(ValueError):
    """Bad command-line input (reported as one line by :func:`main`)."""


def parse(cls: type[T], argv: Sequence[str], prog: str, description: str | None = None,
          default: T | None = None, flags: bool = True) -> T:
    """``argv`` parsed into the dataclass ``cls`` by tyro (``--field-name``, nested dataclasses
    as ``--section.field``; help from the field comments). ``default``: an instance whose values
    are the defaults. ``flags``: booleans are ``--x/--no-x`` flags; otherwise they take a value
    (``--progress false``). A parse error raises :class:`UsageError` with tyro's message on one
    line; ``--help`` prints the help and raises ``SystemExit(0)``. The parsed dataclass is
    checked with :func:`simrl.core.config.validate` (its ``validate()`` methods)."""
    import tyro

    args = list(argv)
    if not flags:  # tyro spells boolean values True/False; accept true/false too
        args = [a.capitalize() if a.lower() in ("true", "false") and i and args[i - 1].startswith("--")
                else a for i, a in enumerate(args)]
    config = () if flags else (tyro.conf.FlagConversionOff,)
    stderr = io.StringIO()
    kwargs: dict[str, Any] = {} if default is None else {"default": default}
    # tyro imports torch when "torch" is in sys.modules, even as the None that blocks it (a
    # robot computer's way to keep torch out): hide the entry while parsing.
    blocked = {k: None for k in ("torch",) if k in sys.modules and sys.modules[k] is None}
    for name in blocked:
        del sys.modules[name]
    try:
        with contextlib.redirect_stderr(stderr):
            parsed = tyro.cli(cls, args=args, prog=prog, description=description, config=config,
                              **kwargs)
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        raise UsageError(_one_line(stderr.getvalue()) or "invalid arguments") from None
    finally:
        sys.modules.update(blocked)
    return validate(parsed)  # NaN anywhere, then each dataclass's own validate(): names the field


def _one_line(text: str) -> str:
    """tyro's error box (title, message, separator, details) as one line: title and message.
    The title is on the box's top edge, or (plain-text boxes) a block of its own."""
    title, blocks, block = "", [], []
    for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines():
        line = line.strip().strip("│╭╮╰╯┃|").strip()
        if "For full helptext" in line:
            break
        if line.startswith(("─", "━")) and line.strip("─━ ") and not title and not blocks and not block:
            title = line.strip("─━ ")           # the top edge: ╭─ Title ───╮
        elif not line.strip("─━-+ "):          # an edge or a separator ends a block
            if block:
                blocks.append(" ".join(block))
                block = []
        else:
            block.append(line)
    if block:
        blocks.append(" ".join(block))
    if not title and len(blocks) > 1:
        title = blocks.pop(0)
    message = blocks[0] if blocks else ""
    if title and message and not message.startswith(title):
        return f"{title}: {message}"
    return message or title


def print_help() -> None:
    discover()
    names = COMMANDS.names()
    width = max(len(n) for n in names)
    lines = [f"usage: {PROG} COMMAND [OPTIONS] (simrl COMMAND --help: its options)", "",
             DESCRIPTION, "", "commands:"]
    for name in sorted(names):
        cmd = COMMANDS.get(name)
        lines.append(f"  {name:{width}s}  {cmd.help}")
    missing = [f"{name} (needs {need})" for name, need in UNAVAILABLE.items()]
    if missing:
        lines += ["", "unavailable here: " + ", ".join(missing)]
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``simrl ARGV``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print_help()
        if not argv:
            return 2
        raise SystemExit(0)
    name, rest = argv[0], argv[1:]
    discover()
    if name in UNAVAILABLE and name not in COMMANDS:
        print(f"{PROG} {name}: error: needs {UNAVAILABLE[name]}, which is not installed here",
              file=sys.stderr)
        return 2
    try:
        cmd = COMMANDS.get(name)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(cmd.run(rest) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if not top or top in ("simrl", "envs", "policies", "deploy"):
            raise
        print(f"{PROG} {name}: error: needs {exc.name}, which is not installed here", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Bad input (options, configs, checkpoints, logs): one clear line, not a stack trace.
        print(f"{PROG} {name}: error: {exc}", file=sys.stderr)
        return 2


def config_fields(config: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted field path -> value over a config dataclass and its nested ones."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(config_fields(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out
