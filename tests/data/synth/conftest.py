"""A small MBE-synth dataset generated once per test session (about 2 s on one core)."""

from __future__ import annotations

from pathlib import Path

import pytest

from moon.data.synth import SynthConfig, generate

SMALL = SynthConfig(products=80, seed=7, workers=1, shard_size=32)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    generate(SMALL, out, show_progress=False)
    return out
