"""`moon bench run|fashion|leaderboard`: thin wrappers over the benchmarks.mbe runner.

The benchmark code lives in the top-level `benchmarks` package (it uses only moon's public
API); it is imported inside the commands so that `moon --help` does not load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Score models on the MBE / fashion tasks and compare result files.",
                  no_args_is_help=True)
console = Console()


def _print_result(result, out: Path) -> None:
    from benchmarks.mbe.results import flatten, write_result

    write_result(result, out)
    table = Table(title=f"{result.benchmark}: {result.model_id} on {result.data_id} ({result.split})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in flatten(result.tasks).items():
        table.add_row(name, "n/a" if value is None else f"{value:.4f}")
    console.print(table)
    for task, reason in result.not_applicable.items():
        console.print(f"n/a {task}: {reason}")
    console.print(f"wrote {out} ({result.wall_time_s:.0f} s)")


@app.command("run")
def run(model: str = typer.Option(..., help="saved model directory or 'minilm'"),
        data: Path = typer.Option(..., help="moon dataset directory (MBE-synth, MBE or fashion import)"),
        out: Path = typer.Option(..., help="RESULTS.json to write"),
        split: str = typer.Option("test", help="split whose products and queries are scored"),
        ann: str = typer.Option("hnsw", help="index kind for the ANN variants of retrieval, or 'none'"),
        knn: bool = typer.Option(False, help="also kNN classification (train split as memory)"),
        linear_probe: bool = typer.Option(False, help="also a linear probe trained on the train split"),
        per_category: bool = typer.Option(False, help="retrieval metrics per category in the result"),
        category_level: int = typer.Option(0, help="category level of the per-category breakdown"),
        batch_size: int = typer.Option(32, min=1)) -> None:
    """MBE tasks on a moon dataset: retrieval (exact + ANN), zero-shot classes and attributes."""
    from benchmarks.mbe.runner import run_mbe

    result = run_mbe(model, data, split=split, ann_kind=None if ann == "none" else ann, knn=knn,
                     linear_probe=linear_probe, breakdown=per_category, group_level=category_level,
                     batch_size=batch_size)
    _print_result(result, out)


@app.command("fashion")
def fashion(catalogue: Path = typer.Option(..., help="folder with styles.csv and images/"),
            model: str = typer.Option(..., help="saved model directory or 'minilm'"),
            out: Path = typer.Option(..., help="RESULTS.json to write"),
            split: str = typer.Option("test", help="'test' (README split) or 'all' products"),
            per_category: bool = typer.Option(False, help="retrieval metrics per category in the result"),
            category_level: int = typer.Option(0, help="0 masterCategory, 1 subCategory, 2 articleType"),
            examples: int = typer.Option(8, min=0, help="queries per retrieval task kept with their top-5 "
                                                        "products for `moon report` (0: none)"),
            detector: Optional[Path] = typer.Option(None, help="`moon crop train` directory: add core-region "
                                                    "crops to products and image queries, as in training"),
            batch_size: int = typer.Option(32, min=1)) -> None:
    """The fashion catalogue's five tasks (t2i, i2p, t2p, cls, attr) as its README defines them."""
    from benchmarks.mbe.runner import run_fashion

    if split not in ("test", "all"):
        raise ValueError(f"--split must be 'test' or 'all', got {split!r}")
    result = run_fashion(model, catalogue, split=split, breakdown=per_category, group_level=category_level,
                         batch_size=batch_size, examples=examples, detector=detector)
    _print_result(result, out)


def run_labels(paths: list[Path]) -> list[str]:
    """Column labels: file stems, or, when stems repeat (every run writes RESULTS.json), the
    name of the folder each file sits in."""
    stems = [p.stem for p in paths]
    folders = [p.resolve().parent.name for p in paths]
    if len(set(stems)) < len(stems) and len(set(folders)) > len(set(stems)):
        return folders
    return stems


@app.command("leaderboard")
def leaderboard(results: list[Path] = typer.Argument(..., help="RESULTS.json files to compare"),
                out: Path = typer.Option(..., help="markdown file to write"),
                per_category: bool = typer.Option(False, help="add per-category tables when present")) -> None:
    """A markdown table comparing several result files (best per metric in bold)."""
    from moon.data.shards import atomic_write_bytes

    from benchmarks.mbe.results import leaderboard as board, read_result

    text = board([(label, read_result(path)) for label, path in zip(run_labels(results), results)],
                 breakdown=per_category)
    atomic_write_bytes(out, text.encode())
    console.print(text, markup=False)
