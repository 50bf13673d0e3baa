"""`end_process`: the exit code and everything printed survive leaving without exit-time destructors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import sys
    import torch.distributed as dist
    from moon.train.distributed import end_process, init_distributed

    info = init_distributed()
    print("rank", info.rank, "of", info.world_size)
    print("diverged", file=sys.stderr)
    assert dist.is_initialized()
    end_process(int(sys.argv[1]))
    print("not reached")
""")


@pytest.mark.parametrize("code", [0, 3])
def test_end_process_keeps_the_exit_code_and_the_buffered_output(code):
    # Without a launcher's rank variables, and block-buffered as stdout into a pipe is by default.
    dropped = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "PYTHONUNBUFFERED"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(code)], env={**env, "DS_ACCELERATOR": "cpu"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == code, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "rank 0 of 1"
    assert "diverged" in result.stderr
