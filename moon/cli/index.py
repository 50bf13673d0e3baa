"""`moon export`, `moon index build|add`, `moon search`: thin wrappers over moon.index.

Heavy libraries (torch, faiss, transformers) are imported inside the commands so that
`moon --help` stays fast.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Build and grow FAISS indexes from exported embeddings.", no_args_is_help=True)
console = Console()

SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: Optional[str]) -> Optional[int]:
    """'2GB', '512MiB', '1.5g', '1000000' -> bytes (None stays None)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in SIZE_UNITS:
        raise ValueError(f"--memory-budget: cannot read {text!r}; expected a size such as 2GB, 512MiB or 1000000")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])


def parse_filters(items: Optional[list[str]]) -> dict[str, str]:
    filters = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--filter {item!r}: expected KEY=VALUE, e.g. category=Shoes or attr.colour=red")
        filters[key.strip()] = value.strip()
    return filters


def view_by_name(name: str):
    """Product views by the names `moon encode` uses (one vocabulary for the CLI)."""
    from moon.cli.encode import VIEWS
    if name not in VIEWS:
        raise ValueError(f"--view must be one of {', '.join(VIEWS)}, got {name!r}")
    return VIEWS[name]


def export(model: str = typer.Option(..., help="saved model directory or 'minilm'"),
           data: Path = typer.Option(..., help="dataset directory (manifest.json + shards)"),
           out: Path = typer.Option(..., help="export directory (rerun with the same arguments to resume)"),
           split: str = typer.Option("test", help="dataset split to embed"),
           view: str = typer.Option("full", help="product view: full | image | image-title"),
           batch_size: int = typer.Option(32, min=1),
           dtype: str = typer.Option("float32", help="float32 or float16"),
           matryoshka_dim: Optional[int] = typer.Option(None, help="store only this Matryoshka prefix"),
           chunk_size: int = typer.Option(1024, min=1, help="products per resumable chunk")) -> None:
    """Embed a dataset split into resumable vector shards plus a parquet sidecar."""
    from moon.index.export import export_embeddings
    from moon.model.registry import load_embedder

    embedder = load_embedder(model)
    result = export_embeddings(embedder, data, split, out, view=view_by_name(view), batch_size=batch_size,
                               dtype=dtype, matryoshka_dim=matryoshka_dim, chunk_size=chunk_size)
    table = Table(title=f"export {result.out_dir} (rank {result.rank}/{result.world_size})")
    for col in ("chunks", "written now", "already done", "products", "dim", "status"):
        table.add_column(col)
    m = result.manifest
    table.add_row(str(result.chunks_total), str(result.chunks_written), str(result.chunks_skipped),
                  str(m.count) if m else "-", str(m.dim) if m else "-",
                  "complete" if m else "waiting for other ranks")
    console.print(table)


@app.command("build")
def build(export_dir: Path = typer.Argument(..., help="directory written by `moon export`"),
          out: Path = typer.Option(..., help="index directory to create"),
          kind: str = typer.Option("auto", help="auto, flat, hnsw, ivf_flat, ivf_pq or opq_ivf_pq"),
          memory_budget: Optional[str] = typer.Option(None, help="e.g. 2GB; limits the index kinds tried"),
          target_recall: float = typer.Option(0.95, help="recall@10 vs exact search to tune for"),
          overwrite: bool = typer.Option(False, help="replace an index already in --out")) -> None:
    """Build a FAISS index (kind chosen and search parameters tuned automatically)."""
    from moon.index.faiss_index import build_index, write_index_dir

    built = build_index(export_dir, kind=kind, memory_budget_bytes=parse_size(memory_budget),
                        target_recall=target_recall)
    manifest = write_index_dir(built, out, overwrite=overwrite)
    summary = Table(title=f"index {out}")
    for col in ("kind", "factory", "vectors", "params", "recall@10", "qps", "exact qps"):
        summary.add_column(col)
    fmt = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731
    summary.add_row(manifest.kind, manifest.factory, str(manifest.count), str(manifest.search_params or "-"),
                    f"{manifest.recall_at_k:.3f}", fmt(manifest.qps), fmt(manifest.exact_qps))
    console.print(summary)
    if manifest.tuning is not None:
        tried = Table(title="candidates tried")
        for col in ("kind", "build s", "param", "recall@10", "qps", "speedup", "meets target"):
            tried.add_column(col)
        for c in manifest.tuning.candidates:
            tried.add_row(c.kind, f"{c.build_seconds:.1f}", f"{c.param}={c.value}", f"{c.recall:.3f}",
                          f"{c.qps:,.0f}", f"{c.speedup:.2f}x", "yes" if c.meets_target else "no")
        console.print(tried)
        console.print(manifest.tuning.decision)


@app.command("add")
def add(index_dir: Path = typer.Argument(..., help="index directory to grow"),
        export_dir: Path = typer.Argument(..., help="export holding the new products")) -> None:
    """Add the products of an export that the index does not hold yet."""
    from moon.index.faiss_index import add_to_index

    result = add_to_index(index_dir, export_dir)
    table = Table(title=f"index {index_dir} (generation {result.generation})")
    for col in ("added", "already indexed (not re-added)", "total"):
        table.add_column(col)
    table.add_row(str(result.added), str(result.already_present), str(result.count))
    console.print(table)


def _query_vector(searcher, model: Optional[str], text: Optional[str], image: Optional[Path],
                  product_id: Optional[str]):
    """Embed the one query given; a product query uses the product's indexed vector."""
    if sum(x is not None for x in (text, image, product_id)) != 1:
        raise ValueError("give exactly one of --text, --image or --product-id")
    if product_id is not None:
        return searcher.vector(product_id)
    if model is None:
        raise ValueError("--model is required for --text and --image queries")
    from moon.data.records import ProductImage, QueryKind, QueryRecord
    from moon.model.fingerprint import config_hash
    from moon.model.registry import load_embedder

    embedder = load_embedder(model)
    source = searcher.manifest.source
    if source is not None and source.config_hash != config_hash(embedder):
        raise ValueError(f"--model {model} is not the model this index was built from "
                         f"({source.model_id}, config hash {source.config_hash[:12]})")
    if text is not None:
        return embedder.encode_queries([text], show_progress=False)[0]
    formats = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png"}
    if image.suffix.lower() not in formats:
        raise ValueError(f"--image {image}: expected a .jpg, .jpeg or .png file")
    query = QueryRecord(query_id="cli", kind=QueryKind.IMAGE, positive_id="?",
                        image=ProductImage(data=image.read_bytes(), format=formats[image.suffix.lower()]))
    query.image.to_pil()
    return embedder.encode_queries([query], show_progress=False)[0]


def search(index_dir: Path = typer.Argument(..., help="index directory"),
           model: Optional[str] = typer.Option(None, help="model that embeds --text / --image"),
           text: Optional[str] = typer.Option(None, help="text query"),
           image: Optional[Path] = typer.Option(None, help="image query (.jpg/.png)"),
           product_id: Optional[str] = typer.Option(None, help="find products similar to this indexed one"),
           k: int = typer.Option(10, min=1),
           filter: Optional[list[str]] = typer.Option(None, help="KEY=VALUE, repeatable: category=Shoes, "
                                                                 "category.<level>=X, attr.<name>=Y"),
           out: Optional[Path] = typer.Option(None, help="also write the hits as JSON")) -> None:
    """Search an index with a text, image or product query; prints ids, scores, titles."""
    from moon.data.shards import atomic_write_json
    from moon.index.search import IndexSearcher

    searcher = IndexSearcher.load(index_dir)
    filters = parse_filters(filter)
    vector = _query_vector(searcher, model, text, image, product_id)
    extra = 1 if product_id is not None else 0
    hits = [h for h in searcher.search(vector[None, :], k + extra, filters)[0] if h.id != product_id][:k]
    table = Table(title=f"top {k} in {index_dir}" + (f" where {filters}" if filters else ""))
    for col in ("rank", "id", "score", "title"):
        table.add_column(col)
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), hit.id, f"{hit.score:.4f}", hit.title)
    console.print(table)
    if not hits:
        console.print("no product matches" + (f" the filters {filters}" if filters else ""))
    if out is not None:
        atomic_write_json(out, [{"rank": r, "id": h.id, "score": h.score, "title": h.title}
                                for r, h in enumerate(hits, 1)])
