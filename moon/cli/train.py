"""`moon train RECIPE.yaml [key=value ...] [--resume] [--out DIR]`.

Works alone (one-rank gloo group) and under a launcher, which sets the rank environment:
    torchrun --nproc_per_node 8 -m moon train RECIPE.yaml
    deepspeed --no_local_rank [--hostfile HOSTS] --module moon train RECIPE.yaml
(`--no_local_rank` because the deepspeed launcher would otherwise put `--local_rank=N`
before the subcommand; the rank comes from LOCAL_RANK in the environment either way.)
Launched ranks end their own process once the run is written (`moon.train.distributed.end_process`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table


def train(
    recipe: Path = typer.Argument(..., help="recipe YAML (see recipes/)"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key.path=value overrides, e.g. optim.lr=1e-4"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last complete checkpoint in --out"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (default: run.output_dir)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Train a MOON model (or the open_clip baseline) with DeepSpeed as the recipe says."""
    from moon.train.recipe import load_recipe

    spec = load_recipe(recipe, overrides or [])
    import torch.distributed as dist

    from moon.train.distributed import barrier
    from moon.train.trainer import TrainingDiverged, train as run_training

    try:
        result = run_training(spec, out_dir=out, resume=resume, show_progress=not quiet)
    except TrainingDiverged as exc:
        print(f"moon: error: {exc}", file=sys.stderr)
        _leave(3)
    if dist.get_rank() == 0:
        table = Table(title=f"moon train {spec.name}: {result.steps} steps")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in sorted(result.final_metrics.items()):
            table.add_row(key, f"{value:.4f}")
        Console().print(table)
        print(f"model: {result.model_dir}\nrun:   {result.out_dir} (metrics.jsonl, summary.json, tensorboard/)")
    barrier()
    _leave(0)


def _leave(code: int) -> None:
    """Launched ranks (world size > 1) end their process with `end_process`; a one-rank run
    returns normally, so calling the command in-process (typer's CliRunner) keeps the caller."""
    import torch.distributed as dist

    from moon.train.distributed import end_process

    if dist.is_initialized() and dist.get_world_size() > 1:
        end_process(code)
    if code:
        raise typer.Exit(code)
