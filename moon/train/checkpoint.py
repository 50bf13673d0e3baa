"""Atomic, resumable training checkpoints.

Layout under RUN/checkpoints/:
    step-00000100/            DeepSpeed's checkpoint (model, optimizer, LR scheduler, per rank)
        moon/state.json       step, sampler fingerprint, run bookkeeping (rank 0)
        moon/queue.safetensors  the temporal negative queue (identical on every rank)
        moon/rng-rank<r>.json   python / numpy / torch RNG states of rank r
    latest                    the tag of the newest complete checkpoint

A checkpoint is written into `<tag>.tmp/` and renamed to `<tag>/` only after every rank
has finished writing, then `latest` is replaced atomically; a process killed at any point
leaves either the previous checkpoint or the new one, never a half-written one that
`--resume` would pick. Resume reads `latest` and falls back to the newest complete
directory if the pointer is missing or stale.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from moon.data.shards import atomic_write_bytes
from moon.train.distributed import barrier
from moon.train.queue import EmbeddingQueue

LATEST = "latest"
STATE_DIR = "moon"
STATE_FILE = "state.json"
QUEUE_FILE = "queue.safetensors"
TAG_RE = re.compile(r"^step-(\d{8})$")


def tag_for(step: int) -> str:
    return f"step-{step:08d}"


def rng_state() -> dict[str, Any]:
    """All RNG states as JSON-ready data (no pickles in checkpoints we load back)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


class CheckpointManager:
    """Save/find/load checkpoints of one run directory (see module docstring)."""

    def __init__(self, root: Path, keep: int, rank: int, world_size: int) -> None:
        self.root = Path(root)
        self.keep = keep
        self.rank, self.world_size = rank, world_size

    def complete_tags(self) -> list[str]:
        if not self.root.is_dir():
            return []
        tags = [p.name for p in self.root.iterdir()
                if TAG_RE.match(p.name) and (p / STATE_DIR / STATE_FILE).is_file()]
        return sorted(tags)

    def latest(self) -> Optional[str]:
        """The newest complete checkpoint tag, or None."""
        pointer = self.root / LATEST
        if pointer.is_file():
            tag = pointer.read_text().strip()
            if (self.root / tag / STATE_DIR / STATE_FILE).is_file():
                return tag
        tags = self.complete_tags()
        return tags[-1] if tags else None

    def save(self, engine, step: int, state: dict[str, Any], queue: Optional[EmbeddingQueue]) -> str:
        """Collective: every rank calls it. Returns the tag written."""
        from safetensors.torch import save_file

        tag = tag_for(step)
        tmp_tag = tag + ".tmp"
        tmp_dir = self.root / tmp_tag
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp_dir, ignore_errors=True)
        barrier()
        engine.save_checkpoint(str(self.root), tag=tmp_tag, save_latest=False)
        moon_dir = tmp_dir / STATE_DIR
        moon_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(moon_dir / f"rng-rank{self.rank}.json", json.dumps(rng_state()).encode())
        barrier()
        if self.rank == 0:
            if queue is not None:
                save_file(queue.state_dict(), str(moon_dir / QUEUE_FILE))
            atomic_write_bytes(moon_dir / STATE_FILE, json.dumps({"step": step, "tag": tag, **state}, indent=2).encode())
            final = self.root / tag
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp_dir, final)
            atomic_write_bytes(self.root / LATEST, tag.encode())
            for old in self.complete_tags()[:-self.keep]:
                shutil.rmtree(self.root / old, ignore_errors=True)
        barrier()
        return tag

    def load(self, engine, tag: str, queue: Optional[EmbeddingQueue]) -> dict[str, Any]:
        """Restore engine (model, optimizer, scheduler), queue and this rank's RNG; returns state.json."""
        from safetensors.torch import load_file

        ckpt = self.root / tag
        state = json.loads((ckpt / STATE_DIR / STATE_FILE).read_text())
        load_path, _ = engine.load_checkpoint(str(self.root), tag=tag, load_optimizer_states=True,
                                              load_lr_scheduler_states=True)
        if load_path is None:
            raise ValueError(f"{ckpt}: DeepSpeed could not load this checkpoint")
        queue_file = ckpt / STATE_DIR / QUEUE_FILE
        if queue is not None:
            if not queue_file.is_file():
                raise ValueError(f"{ckpt}: the recipe uses a negative queue but the checkpoint has none")
            queue.load_state_dict(load_file(str(queue_file)))
        rng_file = ckpt / STATE_DIR / f"rng-rank{self.rank}.json"
        if not rng_file.is_file():
            raise ValueError(f"{ckpt}: no RNG state for rank {self.rank}; resume with the same number of ranks "
                             f"({state.get('world_size', '?')})")
        set_rng_state(json.loads(rng_file.read_text()))
        return state

    def cleanup_partial(self) -> None:
        """Remove `*.tmp` directories left by a run killed while writing a checkpoint."""
        if self.rank == 0 and self.root.is_dir():
            for p in self.root.glob("*.tmp"):
                shutil.rmtree(p, ignore_errors=True)
        barrier()
