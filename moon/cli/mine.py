"""`moon mine`: write the hard-negative sidecar for a split's training pairs.

A thin wrapper over moon.negatives.mine_negatives; torch, faiss and model code are
imported inside the command so that `moon --help` stays fast. The sidecar goes to --out,
the JSON report next to it (<stem>.report.json).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from moon.data.records import format_validation_error

console = Console()


def mine(model: str = typer.Option(..., "--model", help="saved model dir, a reserved name (minilm) or 'fallback'"),
         data: Path = typer.Option(..., "--data", help="moon dataset"),
         split: str = typer.Option("train", "--split", help="split whose queries are mined (and whose products)"),
         out: Path = typer.Option(..., "--out", help="sidecar parquet file to write"),
         k: int = typer.Option(8, "--k", help="negatives per training pair"),
         policies: str = typer.Option("same_category,knn", "--policies",
                                      help="comma list of same_category, knn, session (merged round-robin)"),
         seed: int = typer.Option(0, "--seed"),
         skip_top: int = typer.Option(0, "--skip-top", help="knn: neighbours skipped at the top"),
         margin: Optional[float] = typer.Option(0.95, "--margin", help="drop candidates above margin x positive score"),
         shared_answers: bool = typer.Option(False, "--keep-shared-answers",
                                             help="also propose products that another query with the same text "
                                                  "points at (off: they are right answers, not negatives)"),
         session_window: Optional[float] = typer.Option(None, "--session-window", help="seconds around each query"),
         chunk_size: int = typer.Option(1024, "--chunk-size", help="records embedded at once (bounds memory)"),
         batch_size: int = typer.Option(32, "--batch-size", help="embedder batch size"),
         exact_max: int = typer.Option(200_000, "--exact-max", help="largest catalogue searched exactly"),
         nprobe: int = typer.Option(32, "--nprobe", help="IVF lists searched per query")) -> None:
    """Mine k hard negatives per training pair into a parquet sidecar that `moon train` reads."""
    try:
        from moon.model.registry import load_embedder
        from moon.negatives.fallback import FallbackEmbedder
        from moon.negatives.miner import MinerConfig, mine_negatives, report_path

        config = MinerConfig(k=k, policies=[p.strip() for p in policies.split(",") if p.strip()], seed=seed,
                             skip_top=skip_top, relative_margin=margin, session_window=session_window,
                             skip_shared_answers=not shared_answers, chunk_size=chunk_size, embed_batch_size=batch_size, exact_max=exact_max,
                             nprobe=nprobe)
        embedder = FallbackEmbedder() if model == "fallback" else load_embedder(model)
        report = mine_negatives(embedder, data, split, out, config)
    except (ValueError, OSError) as exc:
        message = format_validation_error(exc, "options") if isinstance(exc, ValidationError) else str(exc)
        print(f"moon: error: {message}", file=sys.stderr)
        raise typer.Exit(2) from None
    table = Table(title=f"negatives {out}")
    table.add_column("field")
    table.add_column("value", justify="right")
    rows = {"model": report.model_id, "catalogue": report.catalogue, "queries": report.queries,
            "pairs": report.pairs, "negatives": report.negatives, "short pairs": report.short_pairs,
            "index": report.index.get("kind"),
            **{f"policy {p}": n for p, n in report.per_policy.items()},
            **{f"skipped {r}": n for r, n in report.skipped.items()},
            **{f"filtered {f}": n for f, n in report.filtered.items()},
            **{f"seconds {s}": f"{t:.1f}" for s, t in report.seconds.items()},
            "report": str(report_path(out))}
    for key, value in rows.items():
        table.add_row(key, str(value))
    console.print(table)
