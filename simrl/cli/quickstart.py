"""``simrl quickstart``: the whole simrl loop on a small scale (see :mod:`simrl.quickstart`)."""

from __future__ import annotations

import simrl.quickstart
from simrl.cli import command, parse
from simrl.quickstart import QuickstartConfig


@command("quickstart", help="run the whole simrl loop on a small scale")
def run(argv: list[str]) -> int:
    return simrl.quickstart.run(parse(QuickstartConfig, argv, "simrl quickstart",
                                      simrl.quickstart.__doc__))
