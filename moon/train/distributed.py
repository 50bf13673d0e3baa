"""Process-group setup that works the same alone, under torchrun and under the deepspeed launcher.

Launchers (torchrun, `deepspeed`, DeepSpeed's multi-node hostfile runner) export RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Started plainly (`moon train r.yaml`)
there is no launcher, so this module fills in a one-rank group on a free local port; the
trainer code path is then identical for 1 and N ranks. Without CUDA, DeepSpeed runs on
its CPU accelerator (DS_ACCELERATOR=cpu) over gloo.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    use_cuda: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def prepare_environment() -> bool:
    """Set the environment DeepSpeed and transformers must see before import; True if CUDA."""
    use_cuda = torch.cuda.is_available()
    if not use_cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return use_cuda


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_distributed() -> DistInfo:
    """Initialise (once) the default process group via DeepSpeed; returns this process's place."""
    use_cuda = prepare_environment()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    import deepspeed
    import torch.distributed as dist

    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if use_cuda else "gloo", auto_mpi_discovery=False,
                                   verbose=False)
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return DistInfo(rank, world, local_rank, local_world, use_cuda)


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def end_process(code: int) -> NoReturn:
    """End this rank's process with `code` once everything it writes is written.

    torch 2.14's gloo backend sometimes aborts (SIGABRT, "terminate called without an active
    exception") in the interpreter's exit-time destructors after a run has finished: seen once
    in CI at the end of a 2-rank `moon train`, which the launcher then reported as a failed run,
    and in 3 of ~100 2-rank test runs even after `destroy_process_group`. So the group is torn
    down here, the standard streams flushed, and the process left with `os._exit`, which runs
    no such destructors. Only for a command's last line: nothing after it runs.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
