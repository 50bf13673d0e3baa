"""`moon quickstart`: the whole job end to end on MBE-synth, then a scorecard.

The stages live in moon.pipeline.quickstart; this command adds the scorer (the MBE runner
of benchmarks.mbe, which moon/ itself never imports), prints each stage as it finishes and
the scorecard at the end. Re-running the same command resumes: finished stages are skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def mbe_scorer(model: Path, data: Path, out: Path) -> dict[str, Any]:
    """Score one model with the MBE runner on the test split; write its RESULTS.json."""
    from benchmarks.mbe.results import flatten, write_result
    from benchmarks.mbe.runner import run_mbe

    result = run_mbe(model, data, split="test")
    write_result(result, out)
    return {"model_id": result.model_id, "result_file": str(out), "metrics": flatten(result.tasks),
            "not_applicable": result.not_applicable, "runner_seconds": result.wall_time_s}


def _stage_line(outcome) -> None:
    record = outcome.record
    status = "[green]done[/green]" if outcome.ran else "[dim]done before, skipped[/dim]"
    console.print(f"[bold]{record.stage}[/bold] {status} ({record.wall_seconds:.1f} s)")


def _print_scorecard(card: dict[str, Any], run_dir: Path) -> None:
    labels = list(card["models"])
    scores = Table(title="scorecard (MBE-synth test split; best per row in bold)")
    scores.add_column("metric")
    for label in labels:
        scores.add_column(label, justify="right")
    for row in card["comparison"]:
        if row["headline"]:
            cells = []
            for label in labels:
                value = row["values"].get(label)
                text = "n/a" if value is None else f"{value:.3f}"
                cells.append(f"[bold]{text}[/bold]" if row["best"] == label else text)
            scores.add_row(row["metric"], *cells)
    console.print(scores)
    stages = Table(title="stage wall times")
    stages.add_column("stage")
    stages.add_column("seconds", justify="right")
    stages.add_column("this run")
    for s in card["stages"]:
        stages.add_row(s["stage"], f"{s['wall_seconds']:.1f}", "ran" if s["ran_now"] else "done before")
    stages.add_row("total", f"{card['total_wall_seconds']:.1f}", f"{card['this_run_seconds']:.1f} s now")
    console.print(stages)
    example = (card.get("index") or {}).get("example") or {}
    if example:
        top = example["top3"][0]["title"] if example["top3"] else "-"
        console.print(f"example search \"{example['query']}\": positive at rank "
                      f"{example['positive_rank_in_top10'] or '>10'}; top hit: {top}")
    console.print(f"wrote {run_dir / 'scorecard.json'} and {run_dir / 'scorecard.md'}")


def quickstart(
    run_dir: Path = typer.Option(Path("runs/quickstart"), "--run-dir", help="all artefacts go here; re-run to resume"),
    products: int = typer.Option(1500, "--products", help="MBE-synth products over all splits (min 100)"),
    steps: int = typer.Option(40, "--steps", help="training steps of MOON and of the baseline (same budget)"),
    seed: int = typer.Option(0, "--seed"),
    detector_epochs: int = typer.Option(6, "--detector-epochs", help="YOLO epochs on the detector sample"),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="MOON recipe (default recipes/quickstart-cpu.yaml)"),
    baseline_recipe: Optional[Path] = typer.Option(None, "--baseline-recipe",
                                                   help="baseline recipe (default recipes/openclip-baseline-cpu.yaml)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """Generate MBE-synth, crop, mine, train MOON and open_clip, export, index, score: one run dir."""
    from pydantic import ValidationError

    from moon.data.records import format_validation_error
    from moon.pipeline.quickstart import QuickstartConfig, run_quickstart
    from moon.train.trainer import TrainingDiverged

    try:
        options = {"run_dir": run_dir, "products": products, "steps": steps, "seed": seed,
                   "detector_epochs": detector_epochs, "show_progress": not quiet}
        options.update({k: v for k, v in (("recipe", recipe), ("baseline_recipe", baseline_recipe)) if v is not None})
        config = QuickstartConfig(**options)
        result = run_quickstart(config, mbe_scorer,
                                on_start=lambda stage: console.print(f"[bold]{stage}[/bold] running ..."),
                                on_end=_stage_line)
    except ValidationError as exc:
        print(f"moon: error: {format_validation_error(exc, 'options')}", file=sys.stderr)
        raise typer.Exit(2) from None
    except (ValueError, OSError) as exc:
        print(f"moon: error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except TrainingDiverged as exc:
        print(f"moon: error: {exc}", file=sys.stderr)
        raise typer.Exit(3) from None
    _print_scorecard(result.scorecard, run_dir)
