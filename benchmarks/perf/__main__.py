"""`python -m benchmarks.perf [--quick] [--only a,b] --out perf.json`: every ratio in one run.

Prints one line per benchmark as it finishes, then a table of the headline ratios, and
writes the whole result (see README "Performance benchmarks") atomically to --out. Exits
1 if any benchmark failed (its error is in the JSON).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.perf.suite import Context, benchmark_names, run_suite

console = Console()


def _print(result: dict) -> None:
    table = Table(title=f"MOON performance ratios ({'quick' if result['quick'] else 'full'}, "
                        f"{result['threads']} threads, {result['total_seconds']:.0f} s)")
    for col in ("benchmark", "ratio", "meaning", "seconds"):
        table.add_column(col, justify="right" if col in ("ratio", "seconds") else "left")
    for name, r in result["benchmarks"].items():
        if "error" in r:
            table.add_row(name, "[red]failed[/red]", r["error"], f"{r['seconds']:.0f}")
        else:
            table.add_row(name, f"{r['ratio']:.3g}", r["meaning"], f"{r['seconds']:.0f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute per benchmark or less)")
    parser.add_argument("--out", type=Path, default=Path("perf.json"), help="JSON result file")
    parser.add_argument("--only", default=None, help=f"comma list of: {', '.join(benchmark_names())}")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch / FAISS threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    unknown = [n for n in only or [] if n not in benchmark_names()]
    if unknown:
        print(f"error: --only: unknown benchmark(s) {unknown}; known: {', '.join(benchmark_names())}",
              file=sys.stderr)
        sys.exit(2)
    from moon.data.shards import atomic_write_json

    with tempfile.TemporaryDirectory(prefix="moon-perf-") as work:
        ctx = Context(quick=args.quick, work=Path(work), threads=args.threads, seed=args.seed)
        result = run_suite(ctx, only, on_done=lambda name, r: console.print(
            f"{name}: " + (f"[red]{r['error']}[/red]" if "error" in r else f"{r['ratio']:.3g} ({r['meaning']})")
            + f" [{r['seconds']:.0f} s]"))
    atomic_write_json(args.out, result)
    _print(result)
    console.print(f"wrote {args.out}")
    if result["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
