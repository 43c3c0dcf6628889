"""``simrl bench NAME [OPTIONS]``: the benchmarks of :mod:`simrl.bench` (one module each, with
a ``Config`` dataclass of options and ``run(config)``)."""

from __future__ import annotations

import importlib

from simrl.bench import BENCHES
from simrl.cli import command, parse


@command("bench", help="run a benchmark")
def run(argv: list[str]) -> int:
    import simrl.bench

    if not argv or argv[0] in ("-h", "--help"):
        print(simrl.bench.__doc__ + "\nbenchmarks:\n"
              + "\n".join(f"  {name:9s} {text}" for name, text in BENCHES.items()))
        if not argv:
            raise ValueError(f"give a benchmark: {', '.join(BENCHES)}")
        return 0
    name = argv[0]
    if name not in BENCHES:
        raise ValueError(f"unknown benchmark {name!r}; use one of: {', '.join(BENCHES)}")
    module = importlib.import_module(f"simrl.bench.{name}")
    config = parse(module.Config, argv[1:], f"simrl bench {name}", module.__doc__)
    return int(module.run(config) or 0)
