"""`train(recipe)`: the DeepSpeed training loop for MOON and the open_clip baseline.

One code path for 1 or N ranks, CPU or GPU: the process group comes from the launcher or
is a one-rank gloo group (moon.train.distributed); the DeepSpeed config comes from the
recipe; every batch is a pure function of (seed, step, rank) so `resume=True` replays
exactly what an uninterrupted run would have done. Per optimizer step: `grad_accum`
micro-batches, each either one plain forward/backward or a gradient-cache pass, then one
`engine.step()`. The loss is checked on every rank before any backward; a NaN/inf stops
the run with the step number rather than corrupting the weights.

Run directory: recipe.yaml, deepspeed_config.json, metrics.jsonl, tensorboard/,
checkpoints/, model/ (final `save_pretrained`), summary.json.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from moon.data.answers import SharedAnswers
from moon.data.shards import atomic_write_bytes, atomic_write_json
from moon.model.base import move_inputs
from moon.train.checkpoint import CheckpointManager
from moon.train.distributed import DistInfo, barrier, init_distributed
from moon.train.gather import any_rank, collective_device
from moon.train.gradcache import gradcache_step
from moon.train.labels import LabelSampler, label_fields
from moon.train.models import build_model
from moon.train.objective import BatchMeta, ContrastiveObjective, GroupSpec, build_groups
from moon.train.precision import configured_precision
from moon.train.queue import EmbeddingQueue
from moon.train.recipe import Recipe, dump_recipe
from moon.train.runlog import RunLog
from moon.train.sampler import KINDS, PhotoAugment, TrainSampler
from moon.train.validation import validate

SUMMARY_FILE = "summary.json"
EVERY_STEP = ("train/loss", "train/lr", "train/step_seconds")
"""Logged at every step (the loss curve); everything else every run.log_every steps."""
MODEL_DIR = "model"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


@dataclass
class TrainResult:
    out_dir: Path
    model_dir: Path
    steps: int
    final_metrics: dict[str, float]


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: not on biases, norms, scalars or the temperature."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.startswith("temperature.") else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def plain_step(engine, groups: dict[str, GroupSpec], meta: BatchMeta, device: torch.device, loss_scale: float,
               guard) -> dict[str, torch.Tensor]:
    """One micro-batch with the whole graph in memory: forward, loss check, backward."""
    inputs = {name: move_inputs(make(records), device) for name, (records, make) in groups.items()}
    loss, stats = engine(op="step", inputs=inputs, meta=meta)
    guard(loss)
    engine.backward(loss * loss_scale, scale_wrt_gas=False)
    stats["loss"] = loss.detach()
    return stats


def _check_zero3(module: torch.nn.Module) -> None:
    """ZeRO-3 gathers a module's parameters when its forward runs; torch's MultiheadAttention
    reads `out_proj.weight` without calling `out_proj`, which would see a partitioned tensor."""
    if any(isinstance(m, torch.nn.MultiheadAttention) for m in module.modules()):
        raise ValueError("deepspeed.zero_stage: 3 cannot train modules built on torch.nn.MultiheadAttention; for "
                         "open_clip configs set block_type: custom in vision_cfg and text_cfg (the named configs "
                         "do), or use ZeRO stage 2")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _mean_over_ranks(stats: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Average stats over micro-batches, then over ranks (same keys on every rank)."""
    import torch.distributed as dist

    keys = sorted(stats[0])
    vec = torch.stack([torch.stack([s[k].detach().float().cpu().reshape(()) for s in stats]).mean() for k in keys])
    if dist.is_initialized() and dist.get_world_size() > 1:
        vec = vec.to(collective_device())
        dist.all_reduce(vec)
        vec = vec.cpu() / dist.get_world_size()
    return {k: float(v) for k, v in zip(keys, vec.tolist())}


class Trainer:
    """Holds the state of one run; `run()` trains to `optim.steps` and saves the model."""

    def __init__(self, recipe: Recipe, out_dir: Optional[Path] = None, resume: bool = False,
                 show_progress: bool = True) -> None:
        self.recipe = recipe
        self.out = Path(out_dir) if out_dir is not None else recipe.output_dir()
        self.resume = resume
        self.show_progress = show_progress
        self.started, self.wall_before = time.time(), 0.0
        self.val_before: dict[str, float] = {}
        self.last_checkpoint = -1
        self.dist: DistInfo = init_distributed()
        self.device = torch.device("cuda", self.dist.local_rank) if self.dist.use_cuda else torch.device("cpu")
        self.ckpt = CheckpointManager(self.out / "checkpoints", recipe.run.keep_checkpoints,
                                      self.dist.rank, self.dist.world_size)
        if not resume and self.ckpt.latest() is not None:
            raise ValueError(f"{self.out} already holds checkpoints of a run: pass --resume to continue it, "
                             "or choose another --out")
        if resume and self.ckpt.latest() is None:
            raise ValueError(f"{self.out}: nothing to resume (no complete checkpoint in {self.ckpt.root})")

    # ---- setup ---------------------------------------------------------------------------------

    def _load_data(self) -> None:
        from moon.data.shards import open_dataset

        r = self.recipe
        dataset = open_dataset(r.data.dataset)
        self.train_products = dataset.load_products(r.data.train_split)
        self.train_queries = dataset.load_queries(r.data.train_split)
        self.category_levels = list(dataset.manifest.category_levels)
        self.attribute_names = list(dataset.manifest.attribute_names)
        self.val_products, self.val_queries = [], []
        self.val_note = None
        split = r.data.val_split
        if r.validation.enabled and split is not None:
            if dataset.has(split, "products") and dataset.has(split, "queries"):
                self.val_products = dataset.load_products(split)
                self.val_queries = dataset.load_queries(split)
            else:
                self.val_note = f"dataset has no '{split}' products+queries: validation skipped"

    def _build(self) -> None:
        import deepspeed

        r = self.recipe
        self.labels = None
        if r.loss.label_weight > 0:
            fields = label_fields(self.train_products, self.category_levels, self.attribute_names, r.loss.label_fields)
            self.labels = LabelSampler(fields, r.loss.label_candidates, r.run.seed, self.dist.rank,
                                       r.loss.label_logit_adjust, r.loss.label_distractors)
        _seed_everything(r.run.seed)
        model = build_model(r.model, r.run.seed, self.train_products, self.train_queries)
        self.model = model
        self.queue = EmbeddingQueue(r.negatives.queue_size, model.embedding_dim) if r.negatives.queue_size else None
        self.objective = ContrastiveObjective(model, r.loss, r.negatives, self.queue)
        if r.deepspeed.zero_stage == 3:
            _check_zero3(self.objective)
        self.ds_config = r.deepspeed_config(self.dist.world_size, self.dist.use_cuda)
        self.engine, _, _, _ = deepspeed.initialize(model=self.objective,
                                                    model_parameters=param_groups(self.objective, r.optim.weight_decay),
                                                    config=self.ds_config)
        self.sampler = TrainSampler(
            self.train_queries, self.train_products, {k: r.data.query_mix.of(k) for k in KINDS},
            r.optim.batch_size, r.negatives.hard_k, r.run.seed, self.dist.rank, self.dist.world_size,
            r.data.negatives, SharedAnswers(self.train_queries) if r.negatives.mask_shared_answers else None,
            fresh_image_queries=r.data.image_queries == "fresh",
            augment_product_photos=(PhotoAugment(**r.data.product_photo_augment.model_dump())
                                    if r.data.product_photos == "augmented" else None))
        self.kind_weights = {k: r.loss.kind_weights.of(k) for k in KINDS}
        self.view = r.data.product_view.to_view()

    # ---- steps ---------------------------------------------------------------------------------

    def _guard(self, step: int):
        def check(loss: torch.Tensor) -> None:
            value = float(loss.detach().float().cpu())
            if any_rank(not math.isfinite(value)):
                latest = self.ckpt.latest()
                where = f"last good checkpoint: {self.ckpt.root / latest}" if latest else "no checkpoint yet"
                raise TrainingDiverged(
                    f"step {step}: training loss is {value} on rank {self.dist.rank} (not finite); stopped before "
                    f"applying this step ({where}). Lower optim.lr (or lengthen optim.warmup_steps), raise "
                    "loss.temperature, or inspect this step's data.")
        return check

    def _train_step(self, step: int) -> dict[str, float]:
        """Optimizer step number `step` (1-based): grad_accum micro-batches then engine.step()."""
        r = self.recipe
        accum = r.optim.grad_accum
        t0 = time.perf_counter()
        self.objective.queue_active = step > r.negatives.queue_start_step
        stats = []
        for micro in range(accum):
            micro_step = (step - 1) * accum + micro
            batch = self.sampler.batch(micro_step)
            labels = self.labels.batch(batch.positives, micro_step) if self.labels is not None else None
            meta = BatchMeta.from_batch(batch, self.kind_weights, labels).to(self.device)
            groups = build_groups(batch, self.model.processor, self.view, r.loss.intra_product_weight > 0, labels,
                                  r.loss.label_inputs, r.loss.intra_hard_negatives, r.loss.intra_hard_images,
                                  r.loss.query_image_weight > 0)
            if r.optim.gradcache_chunk:
                s = gradcache_step(self.engine, groups, meta, r.optim.gradcache_chunk, self.device, 1.0 / accum,
                                   r.loss.aux_weight, self._guard(step))
                s["loss"] = s["contrastive"] + r.loss.aux_weight * s["aux"]
            else:
                s = plain_step(self.engine, groups, meta, self.device, 1.0 / accum, self._guard(step))
            stats.append(s)
        lr = float(self.engine.optimizer.param_groups[0]["lr"])
        self.engine.step()
        metrics = {f"train/{k}": v for k, v in _mean_over_ranks(stats).items()}
        metrics["train/lr"] = lr
        metrics["train/epoch"] = self.sampler.epoch(step * accum)
        metrics["train/step_seconds"] = time.perf_counter() - t0
        return metrics

    def _validate(self) -> dict[str, float]:
        v = self.recipe.validation
        if not self.val_products:
            return {}
        run = lambda: validate(self.model, self.val_products, self.val_queries, v.kinds, v.k,  # noqa: E731
                               v.max_queries, v.batch_size)
        if self.recipe.deepspeed.zero_stage != 3:
            return run()
        import deepspeed

        # Inference outside the engine (the model's own encode API) sees whole parameters.
        with deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None):
            return run()

    def _save_checkpoint(self, step: int) -> None:
        state = {"sampler": self.sampler.state_dict(), "world_size": self.dist.world_size,
                 "wall_seconds": self._wall(), "val_before": self.val_before}
        self.ckpt.save(self.engine, step, state, self.queue)
        self.last_checkpoint = step

    def _save_model(self) -> Path:
        final = self.out / MODEL_DIR
        tmp = self.out / (MODEL_DIR + ".tmp")
        if self.recipe.deepspeed.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None):
                if self.dist.is_main:
                    self._write_model(tmp, final)
        elif self.dist.is_main:
            self._write_model(tmp, final)
        barrier()
        return final

    def _write_model(self, tmp: Path, final: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)

    def _wall(self) -> float:
        return self.wall_before + time.time() - self.started

    # ---- the run -------------------------------------------------------------------------------

    def _restore(self) -> int:
        """Load the last complete checkpoint; returns the step it was taken after."""
        self.ckpt.cleanup_partial()
        state = self.ckpt.load(self.engine, self.ckpt.latest(), self.queue)
        self.sampler.check_resume(state["sampler"])
        self.wall_before = float(state.get("wall_seconds", 0.0))
        self.val_before = state.get("val_before") or {}
        self.last_checkpoint = int(state["step"])
        return self.last_checkpoint

    def _loop(self, start: int, log: RunLog) -> None:
        r = self.recipe
        bar = tqdm(total=r.optim.steps, initial=start, desc=f"train {r.name}", unit="step",
                   disable=not (self.dist.is_main and self.show_progress))
        try:
            for step in range(start + 1, r.optim.steps + 1):
                metrics = self._train_step(step)
                validated = bool(r.run.validate_every) and step % r.run.validate_every == 0 \
                    and step != r.optim.steps
                if validated:
                    metrics.update(self._validate())
                if validated or step % r.run.log_every == 0 or step == start + 1:
                    log.log(step, metrics)
                else:
                    log.log(step, {k: v for k, v in metrics.items() if k in EVERY_STEP})
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['train/loss']:.4f}", T=f"{metrics['train/temperature']:.3f}")
                if r.run.checkpoint_every and step % r.run.checkpoint_every == 0:
                    self._save_checkpoint(step)
        finally:
            bar.close()

    def run(self) -> TrainResult:
        r = self.recipe
        self.started = time.time()
        if not self.dist.use_cuda:
            # Ranks sharing a CPU split its cores instead of oversubscribing them.
            torch.set_num_threads(r.run.threads or max(1, (os.cpu_count() or 1) // self.dist.local_world_size))
        self._load_data()
        self._build()
        start = self._restore() if self.resume else 0
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.out / "recipe.yaml", dump_recipe(r).encode())
            atomic_write_json(self.out / "deepspeed_config.json", self.ds_config)
        log = RunLog(self.out, self.dist.is_main, resume_step=start if self.resume else None)
        if r.validation.at_start and start == 0:
            self.val_before = self._validate()
            log.log(0, self.val_before)
        self._loop(start, log)
        if self.last_checkpoint != r.optim.steps:
            self._save_checkpoint(r.optim.steps)
        val_after = self._validate()
        log.log(r.optim.steps, val_after)
        log.close()
        model_dir = self._save_model()
        if self.dist.is_main:
            atomic_write_json(self.out / SUMMARY_FILE, {
                "recipe": r.name, "steps": r.optim.steps, "world_size": self.dist.world_size,
                "wall_seconds": self._wall(), "resumed_from": start if self.resume else None,
                "model_dir": str(model_dir), "model_id": self.model.model_id,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "precision": configured_precision(self.ds_config),
                "val_before": self.val_before or None, "val_after": val_after, "validation_note": self.val_note,
                "data": asdict(self.sampler.report),
            })
        return TrainResult(self.out, model_dir, r.optim.steps, val_after)


def train(recipe: Recipe, out_dir: Optional[Path] = None, resume: bool = False,
          show_progress: bool = True) -> TrainResult:
    """Train as the recipe says (see module docstring); collective over all launched ranks."""
    return Trainer(recipe, out_dir, resume, show_progress).run()

