"""``simrl export``: writes policy.onnx (or policy.torchscript.pt) into the checkpoint with
normalization and action scaling folded in, after checking it against the torch policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from policies.export import export
from simrl.cli import command, parse


@dataclass
class ExportArgs:
    """What to export."""

    checkpoint: str                                # checkpoint directory
    format: Literal["onnx", "torchscript"] = "onnx"  # output format
    out: str | None = None                         # output file (default: inside the checkpoint)
    tolerance: float = 1e-5                        # parity bound on max |diff| against the torch policy


@command("export", help="export a checkpoint's policy to ONNX or TorchScript")
def run(argv: list[str]) -> int:
    args = parse(ExportArgs, argv, "simrl export", __doc__)
    result = export(args.checkpoint, args.format, args.out, args.tolerance)
    print(f"wrote {result.path} (parity: max |diff| {result.max_abs_diff:.2e} over {result.samples} "
          f"observations)")
    return 0
