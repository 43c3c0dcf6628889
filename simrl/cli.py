"""The ``simrl`` command line. Each subcommand lives in its own module that exposes
``add_parser(subparsers)``; the parser it adds sets ``func(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute subcommands, in the order ``simrl --help`` lists them.
COMMAND_MODULES = (
    "simrl.quickstart",
    "simrl.bench",
    "simrl.train",
    "simrl.evaluate",
    "simrl.validate.cli",
    "simrl.dream.cli",
    "simrl.deploy_cli",
    "simrl.distill_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simrl",
        description="Sim-to-real robot learning: domain-randomized MuJoCo environments, PPO "
                    "training, checkpoint ranking and a safe robot runtime.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    unavailable = []
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A robot computer has no torch: its commands (deploy, robot-server) still work.
            if exc.name is None or exc.name.split(".")[0] in ("simrl", "envs", "policies", "deploy"):
                raise
            unavailable.append(f"{name.removeprefix('simrl.')} (needs {exc.name})")
            continue
        module.add_parser(sub)
    if unavailable:
        parser.epilog = "unavailable here: " + ", ".join(unavailable)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Bad input (configs, checkpoints, logs): one clear line, not a stack trace.
        print(f"simrl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
