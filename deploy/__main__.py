"""``python -m deploy deploy|robot-server|export ...``: the robot-side commands of ``simrl``
without the rest of its command line, so a robot computer needs no torch (``export`` does)."""

from __future__ import annotations

import argparse
import sys

from simrl.deploy_cli import add_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__)
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before the runtime took over the signals
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as exc:  # bad input: one line, as `simrl` prints it
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
