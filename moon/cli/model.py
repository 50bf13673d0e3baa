"""`moon model ...`: create and describe MOON model directories."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="MOON models: init from a named config, list configs.", no_args_is_help=True)


def _parse_overrides(items: Optional[List[str]]) -> dict:
    """key.path=value; the value is read as JSON when it parses (numbers, lists, null)."""
    result = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected key.path=value")
        try:
            result[key] = json.loads(raw)
        except json.JSONDecodeError:
            result[key] = raw
    return result


@app.command("init")
def init(
    config: str = typer.Option("moon-tiny", "--config", help="named config or JSON file"),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="dataset whose texts train the tokenizer"),
    out: Path = typer.Option(..., "--out", help="model directory to write"),
    corpus_split: Optional[List[str]] = typer.Option(None, "--corpus-split", help="split(s) to read (default train)"),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="config override key.path=value"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Build an untrained model (tokenizer trained on the corpus) and save it."""
    from moon.model.bootstrap import init_model

    try:
        model = init_model(config, out, corpus=corpus, corpus_splits=corpus_split or ["train"],
                           overrides=_parse_overrides(overrides), seed=seed)
    except (ValueError, OSError) as exc:
        print(f"moon: error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    table = Table(title=f"moon model init {model.config.name}")
    table.add_column("field")
    table.add_column("value", justify="right")
    table.add_row("directory", str(out))
    table.add_row("parameters", f"{sum(p.numel() for p in model.parameters()):,}")
    table.add_row("vocabulary", str(len(model.tokenizer)))
    table.add_row("embedding dim", str(model.embedding_dim))
    table.add_row("moe layers", ", ".join(map(str, model.moe_layers)) or "off")
    Console().print(table)


@app.command("configs")
def configs() -> None:
    """List the shipped named configs."""
    from moon.model.config import named_config, named_configs

    table = Table(title="named model configs")
    for col in ("name", "family", "checkpoint", "moe", "pooling"):
        table.add_column(col)
    for name in named_configs():
        c = named_config(name)
        table.add_row(name, c.backbone.family, c.backbone.checkpoint or "(from scratch)",
                      f"{c.moe.mode} N={c.moe.num_experts} k={c.moe.top_k}", c.pooling)
    Console().print(table)
