"""Fixtures shared by the deploy tests: exported checkpoints of the right shapes (weights like a
trained policy's, no training), built once per test module."""

from __future__ import annotations

import pytest

from policies.export import export
from test_export import trained_like_checkpoint


@pytest.fixture(scope="module")
def go1_ckpt(tmp_path_factory) -> str:
    ckpt = trained_like_checkpoint(tmp_path_factory.mktemp("go1") / "c", "go1-velocity", out_gain=0.2)
    export(ckpt)
    return ckpt
