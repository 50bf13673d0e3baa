"""Training step time: DeepSpeed ZeRO-2 (1 process, gloo, CPU accelerator) vs a plain PyTorch loop.

Both sides train the same module (moon-tiny inside the trainer's ContrastiveObjective:
InfoNCE over in-batch + one hard negative, MoE aux loss) from identical weights, on the
same pre-built batches (the processor is not timed), with the same threads, the same
precision (`auto`, as recipes/quickstart-cpu.yaml: bf16 autocast on CPUs with native bf16, else
fp32; moon.train.precision) and the same optimizer
settings: AdamW from torch, gradient clipping 1.0. The DeepSpeed config is the one
`moon.train.recipe` generates for the trainer, with ZeRO stage 2. Steps alternate between
the two sides, so load changes hit both alike, and the fastest step of each is compared:
on a shared machine the minimum is the step time least inflated by other processes
(medians are reported too).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

from moon.data.records import FULL_VIEW
from moon.data.shards import open_dataset

RECIPE = {"name": "perf-training", "model": {"name": "moon-tiny"}, "data": {"dataset": "unused"},
          "negatives": {"hard_k": 1, "queue_size": 0},
          "optim": {"lr": 1.0e-4, "warmup_steps": 1, "steps": 1000, "batch_size": 8, "grad_clip": 1.0},
          "deepspeed": {"zero_stage": 2, "precision": "auto"}}


def _batches(model, dataset, recipe, steps: int) -> list[tuple[dict, object]]:
    """(inputs per group, BatchMeta) for `steps` micro-batches, built once for both loops."""
    from moon.train.objective import BatchMeta, build_groups
    from moon.train.sampler import KINDS, TrainSampler

    ds = open_dataset(dataset)
    sampler = TrainSampler(ds.load_queries("train"), ds.load_products("train"),
                           {k: recipe.data.query_mix.of(k) for k in KINDS}, recipe.optim.batch_size,
                           recipe.negatives.hard_k, seed=0)
    weights = {k: 1.0 for k in KINDS}
    out = []
    for step in range(steps):
        batch = sampler.batch(step)
        groups = build_groups(batch, model.processor, FULL_VIEW, intra=False)
        out.append(({name: make(records) for name, (records, make) in groups.items()},
                    BatchMeta.from_batch(batch, weights)))
    return out


def run(ctx) -> dict:
    from moon.train.distributed import init_distributed
    from moon.train.objective import ContrastiveObjective
    from moon.train.precision import configured_precision
    from moon.train.recipe import parse_recipe
    from moon.train.trainer import param_groups

    timed, batch_size = (3, 4) if ctx.quick else (5, 8)
    tree = copy.deepcopy(RECIPE)
    tree["optim"]["batch_size"] = batch_size
    recipe = parse_recipe(tree, "perf recipe", check_paths=False)
    ds_config = recipe.deepspeed_config(1)
    autocast = configured_precision(ds_config) == "autocast-bf16"
    init_distributed()
    import deepspeed

    model = copy.deepcopy(ctx.model()).train()
    batches = _batches(model, ctx.dataset(), recipe, timed + 1)
    objective = ContrastiveObjective(model, recipe.loss, recipe.negatives)
    plain = copy.deepcopy(objective)
    torch.set_num_threads(ctx.threads)
    engine, _, _, _ = deepspeed.initialize(model=objective, config=ds_config,
                                           model_parameters=param_groups(objective, recipe.optim.weight_decay))
    o = recipe.optim
    optimizer = torch.optim.AdamW(param_groups(plain, o.weight_decay), lr=o.lr, betas=o.betas, eps=o.eps)
    params = [p for p in plain.parameters() if p.requires_grad]

    def ds_step(inputs, meta) -> float:
        start = time.perf_counter()
        loss, _ = engine(op="step", inputs=inputs, meta=meta)
        engine.backward(loss)
        engine.step()
        return time.perf_counter() - start

    def plain_step(inputs, meta) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, _ = plain(op="step", inputs=inputs, meta=meta)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    ds_step(*batches[0])
    plain_step(*batches[0])
    ds_times, plain_times = [], []
    for inputs, meta in batches[1:]:
        ds_times.append(ds_step(inputs, meta))
        plain_times.append(plain_step(inputs, meta))
    ds_s, plain_s = min(ds_times), min(plain_times)
    return {"ratio": ds_s / plain_s, "meaning": "DeepSpeed ZeRO-2 step time / plain PyTorch step time (fastest step)",
            "batch_size": batch_size, "hard_negatives": recipe.negatives.hard_k, "timed_steps": timed,
            "precision": "autocast-bf16" if autocast else "fp32", "zero_stage": recipe.deepspeed.zero_stage,
            "deepspeed_step_seconds": ds_times, "plain_step_seconds": plain_times,
            "deepspeed_min_s": ds_s, "plain_min_s": plain_s, "deepspeed_median_s": statistics.median(ds_times),
            "plain_median_s": statistics.median(plain_times), "threads": torch.get_num_threads()}
