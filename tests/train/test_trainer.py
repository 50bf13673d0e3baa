"""End to end: real `moon train` processes (single, SIGKILLed + resumed, 2-rank ZeRO-2, NaN)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moon.model.registry import load_embedder
from moon.train.precision import cpu_has_native_bf16
from moon.train.recipe import load_recipe
from moon.train.trainer import Trainer
from tests.conftest import build_products
from tests.model.conftest import SMALL

ROOT = Path(__file__).resolve().parents[2]


LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _env() -> dict[str, str]:
    """A clean environment: in-process tests of this session may have set up a one-rank group,
    whose rank/port variables must not leak into (and collide between) the child runs."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    return {**env, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(ROOT)}


def _train_cmd(recipe: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "moon", "train", str(recipe), "--out", str(out), "--quiet", *extra]


def _curve(run: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]


def test_refuses_to_overwrite_a_run_or_resume_nothing(write_recipe, tmp_path):
    recipe = load_recipe(write_recipe())
    with pytest.raises(ValueError, match="nothing to resume"):
        Trainer(recipe, tmp_path / "run", resume=True)
    ckpt = tmp_path / "run" / "checkpoints" / "step-00000001" / "moon"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text("{}")
    with pytest.raises(ValueError, match="pass --resume"):
        Trainer(recipe, tmp_path / "run", resume=False)


@pytest.mark.slow
def test_sigkill_and_resume_reproduce_the_uninterrupted_loss_curve(write_recipe, tmp_path):
    overrides = ["optim.steps=16", "run.checkpoint_every=3", "optim.grad_accum=2", "optim.gradcache_chunk=4",
                 "loss.intra_product_weight=0.5", "loss.label_weight=0.5", "loss.label_distractors=4",
                 "negatives.queue_size=20", "data.image_queries=fresh",
                 "data.product_photos=augmented", "data.product_photo_augment.share=0.5"]
    recipe = write_recipe()
    full, killed = tmp_path / "full", tmp_path / "killed"
    reference = subprocess.Popen(_train_cmd(recipe, full, *overrides), env=_env(), cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(_train_cmd(recipe, killed, *overrides), env=_env(), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = killed / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not latest.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = int(latest.read_text().split("-")[1])
    assert killed_at < 16
    state = json.loads((killed / "checkpoints" / latest.read_text().strip() / "moon" / "state.json").read_text())
    assert state["sampler"]["fresh_image_queries"] is True   # the recipe's choices reached the sampler
    assert state["sampler"]["augment_product_photos"] == {"share": 0.5, "min_area": 0.5, "scope": "all"}

    resumed = subprocess.run(_train_cmd(recipe, killed, "--resume", *overrides), env=_env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]

    assert json.loads((killed / "summary.json").read_text())["resumed_from"] == killed_at
    assert _curve(killed) == _curve(full)  # exact floats: same data, weights, optimizer, queue, RNG
    assert [s for s, _ in _curve(full)] == list(range(1, 17))
    records = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert all(r["train/label"] > 0 for r in records if "train/loss" in r)  # the label term is in the curve

    summary = json.loads((full / "summary.json").read_text())
    assert summary["val_before"] and summary["val_after"]["val/R@10/text"] >= 0
    assert list((full / "tensorboard").glob("events.out.tfevents.*"))
    model = load_embedder(full / "model")
    emb = model.encode_products(build_products(3, seed=8), show_progress=False)
    assert emb.shape == (3, 32)


def test_unknown_label_field_stops_before_training_naming_it(write_recipe, tmp_path):
    result = subprocess.run(_train_cmd(write_recipe(), tmp_path / "run", "loss.label_weight=1.0",
                                       "loss.label_fields=[colour,size]"),
                            env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "loss.label_fields: unknown field(s) size" in result.stderr
    assert "attributes ['colour', 'shape']" in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists() or "train/loss" not in (
        tmp_path / "run" / "metrics.jsonl").read_text()


@pytest.mark.slow
def test_nan_loss_stops_the_run_naming_the_step(write_recipe, tmp_path):
    result = subprocess.run(_train_cmd(write_recipe(), tmp_path / "run", "optim.lr=1e30", "optim.steps=8",
                                       "validation.enabled=false"),
                            env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    message = [line for line in result.stderr.splitlines() if line.startswith("moon: error:")]
    assert message and ("training loss is nan" in message[0] or "training loss is inf" in message[0])
    assert message[0].startswith("moon: error: step ")
    step = int(message[0].split("step ")[1].split(":")[0])
    assert 1 <= step <= 8
    assert not (tmp_path / "run" / "model").exists()


MOON_SMALL = {"architecture": "moon", "name": "moon-tiny", "overrides": {**SMALL, "backbone.init": "zero-residual"}}
"""The model tests' small moon-tiny with the default (zero-residual) init that training uses."""


@pytest.mark.slow
@pytest.mark.parametrize("model", [None, MOON_SMALL], ids=["open_clip", "moon-tiny"])
def test_two_process_zero2_run_reduces_the_loss(write_recipe, tmp_path, model):
    out = tmp_path / "run"
    recipe = write_recipe(**({"model": model} if model else {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "moon",
           "train", str(recipe), "--out", str(out), "--quiet", "deepspeed.zero_stage=2", "optim.steps=16",
           "negatives.queue_size=0", "run.checkpoint_every=8", "validation.at_start=false",
           "deepspeed.precision=auto"]
    result = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["precision"] == ("autocast-bf16" if cpu_has_native_bf16() else "fp32")
    losses = [loss for _, loss in _curve(out)]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4
    ckpt = out / "checkpoints" / "step-00000016"
    assert {p.name for p in (ckpt / "moon").iterdir()} >= {"rng-rank0.json", "rng-rank1.json", "state.json"}
    assert len(list(ckpt.glob("zero_pp_rank_*_optim_states.pt"))) == 2
