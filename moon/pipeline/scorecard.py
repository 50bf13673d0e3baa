"""The scorecard of a quickstart run: models side by side, plus what each stage cost.

Built only from the stages' done markers (their `outputs`), so a resumed run produces the
same scorecard as an uninterrupted one without re-reading any model. The headline rows are
the ones a reader compares first: R@1 and R@10 of each query kind (exact search), and the
zero-shot accuracy of each category level and attribute; every other metric is in the
JSON (and the markdown's full table).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

from moon.pipeline.stages import StageOutcome

SCHEMA = "moon-quickstart-scorecard/1"
_HEADLINE = re.compile(r"^(?:[a-z0-9]+2[a-z0-9]+ R@(?:1|10)|(?:cls|attr)\.[^ ]+ acc)$")


def is_headline(name: str) -> bool:
    """Exact-search R@1/R@10 of a retrieval task, or zero-shot accuracy of a class level / attribute."""
    return _HEADLINE.match(name) is not None


def _best(values: Mapping[str, Optional[float]]) -> Optional[str]:
    numbers = {k: v for k, v in values.items() if v is not None}
    if len(numbers) < 2:
        return None
    top = max(numbers.values())
    winners = [k for k, v in numbers.items() if v == top]
    return winners[0] if len(winners) == 1 else None


def build_scorecard(config: dict[str, Any], outcomes: Mapping[str, StageOutcome], models: Mapping[str, str],
                    training: Mapping[str, str], index_stage: str = "index") -> dict[str, Any]:
    """`models`: column label -> bench stage name; `training`: label -> training stage name."""
    columns: dict[str, dict[str, Any]] = {}
    for label, stage in models.items():
        out = outcomes[stage].record.outputs
        train = outcomes[training[label]].record.outputs if label in training else None
        columns[label] = {"model_id": out.get("model_id"), "result_file": out.get("result_file"),
                          "metrics": out.get("metrics", {}), "not_applicable": out.get("not_applicable", {}),
                          "bench_seconds": outcomes[stage].record.wall_seconds,
                          "training": None if train is None else {
                              k: train.get(k) for k in ("steps", "batch_size", "grad_accum", "parameters",
                                                        "train_wall_seconds", "resumed_from")}}
    names: list[str] = []
    for column in columns.values():
        names += [n for n in column["metrics"] if n not in names]
    comparison = []
    for name in names:
        values = {label: column["metrics"].get(name) for label, column in columns.items()}
        comparison.append({"metric": name, "values": values, "best": _best(values),
                           "headline": is_headline(name)})
    stages = [{"stage": o.record.stage, "wall_seconds": o.record.wall_seconds, "ran_now": o.ran,
               "finished_at": o.record.finished_at} for o in outcomes.values()]
    index = outcomes[index_stage].record.outputs if index_stage in outcomes else {}
    return {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": config, "models": columns, "comparison": comparison,
            "headline": [n for n in names if is_headline(n)], "index": index, "stages": stages,
            "total_wall_seconds": sum(s["wall_seconds"] for s in stages),
            "this_run_seconds": sum(s["wall_seconds"] for s in stages if s["ran_now"])}


def _cell(value: Optional[float], best: bool) -> str:
    if value is None:
        return "n/a"
    return f"**{value:.3f}**" if best else f"{value:.3f}"


def _metric_table(card: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    labels = list(card["models"])
    lines = ["| metric | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for row in rows:
        cells = [_cell(row["values"].get(label), row["best"] == label) for label in labels]
        lines.append(f"| {row['metric']} | " + " | ".join(cells) + " |")
    return lines


def scorecard_markdown(card: dict[str, Any]) -> str:
    """The scorecard as markdown: headline table, training budget, stage times, all metrics."""
    config = card["config"]
    lines = ["# MOON quickstart scorecard", "",
             f"MBE-synth with {config['products']} products (seed {config['seed']}), scored on the test split; "
             f"run directory `{config['run_dir']}`. Best value per row in bold.", "", "## Headline", ""]
    lines += _metric_table(card, [r for r in card["comparison"] if r["headline"]])
    lines += ["", "## Training budget", "", "| model | parameters | steps | queries/step | train wall (s) |",
              "|---|---:|---:|---:|---:|"]
    for label, column in card["models"].items():
        t = column["training"]
        if t is not None:
            lines.append(f"| {label} | {t['parameters']:,} | {t['steps']} | {t['batch_size'] * t['grad_accum']} | "
                         f"{t['train_wall_seconds']:.0f} |")
    index = card.get("index") or {}
    if index:
        lines += ["", "## Index", "", f"{index.get('kind')} over {index.get('count')} test products, "
                  f"recall@10 vs exact {index.get('recall_at_10', 0):.3f}: {index.get('decision')}"]
    lines += ["", "## Stage wall times", "", "| stage | wall (s) | this run |", "|---|---:|---|"]
    for s in card["stages"]:
        lines.append(f"| {s['stage']} | {s['wall_seconds']:.1f} | {'ran' if s['ran_now'] else 'done before'} |")
    lines += [f"| **total** | **{card['total_wall_seconds']:.1f}** | |", "", "## All metrics", ""]
    lines += _metric_table(card, card["comparison"])
    return "\n".join(lines) + "\n"
