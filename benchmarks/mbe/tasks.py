"""Benchmark tasks as data, and how each kind is scored from embeddings.

A task says what to embed (queries, which product view) and what counts as correct; the
runner embeds (with a per-run cache) and calls `score_*`. Keeping task definitions free of
model code lets one definition serve every embedder, and lets the dataset modules
(`mbe_tasks` here, `fashion.py`) state their protocol in a few lines.

Kinds:
- RetrievalTask: queries -> products of a view, exact (brute force) and optionally ANN
  through a moon.index index tuned to a target recall (the deployed path);
- ZeroShotTask: products of a view -> nearest label-text embedding (category level or
  attribute), accuracy and macro-F1;
- ProbeTask: kNN vote or a linear (logistic regression) probe trained on another split's
  product embeddings, accuracy and macro-F1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence

import numpy as np
import torch

from moon.data.records import (FULL_VIEW, IMAGE_TITLE_VIEW, ProductRecord, ProductView, QueryKind,
                               QueryRecord)
from moon.index.faiss_index import build_index
from moon.index.search import IndexSearcher
from moon.model.api import QueryInput

from benchmarks.mbe.metrics import (Relevance, accuracy, argmax_cosine, macro_f1, parse_metric,
                                    ranked_per_query, retrieval_per_query, topk)

RETRIEVAL_METRICS = ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10")


@dataclass
class RetrievalTask:
    name: str
    queries: list[QueryInput]
    corpus_view: ProductView
    relevance: Relevance
    metrics: tuple[str, ...] = RETRIEVAL_METRICS
    groups: Optional[np.ndarray] = None
    """Per-query category label used for the per-category breakdown."""
    excluded: int = 0
    """Queries dropped before scoring because no relevant product is in the corpus."""


@dataclass
class ZeroShotTask:
    name: str
    view: ProductView
    labels: list[str]
    truth: np.ndarray
    """Index into `labels` per corpus product; -1 = the product has no value (not scored)."""
    metrics: tuple[str, ...] = ("acc", "macro_f1")


@dataclass
class ProbeTask:
    name: str
    view: ProductView
    method: Literal["knn", "linear"]
    train_truth: np.ndarray
    truth: np.ndarray
    n_classes: int
    k: int = 10


@dataclass
class TaskScore:
    """Metrics of one task (None = not applicable to this model, with the reason)."""

    name: str
    metrics: Optional[dict[str, float]]
    counts: dict[str, int] = field(default_factory=dict)
    na_reason: Optional[str] = None
    breakdown: Optional[dict[str, dict[str, float]]] = None
    details: dict[str, object] = field(default_factory=dict)
    examples: Optional[list[dict[str, object]]] = None


def _breakdown(values: dict[str, np.ndarray], groups: np.ndarray) -> dict[str, dict[str, float]]:
    """Mean of each per-query metric within each group (plus the group's query count)."""
    names, inverse, counts = np.unique(groups.astype(str), return_inverse=True, return_counts=True)
    out: dict[str, dict[str, float]] = {str(g): {"n": float(c)} for g, c in zip(names, counts)}
    for metric, per_query in values.items():
        sums = np.bincount(inverse, weights=per_query, minlength=len(names))
        for g, s, c in zip(names, sums, counts):
            out[str(g)][metric] = float(s / c)
    return out


def score_retrieval(task: RetrievalTask, query_emb: np.ndarray, corpus_emb: np.ndarray,
                    breakdown: bool = False) -> TaskScore:
    values = retrieval_per_query(query_emb, corpus_emb, task.relevance, task.metrics)
    return TaskScore(task.name, {m: float(v.mean()) for m, v in values.items()},
                     counts={"queries": len(query_emb), "corpus": len(corpus_emb), "excluded": task.excluded},
                     breakdown=_breakdown(values, task.groups) if breakdown and task.groups is not None else None)


def score_retrieval_ann(task: RetrievalTask, query_emb: np.ndarray, corpus_emb: np.ndarray,
                        kind: str = "hnsw", target_recall: float = 0.95) -> TaskScore:
    """The same task answered by a tuned moon.index ANN index instead of brute force."""
    k = max(parse_metric(m)[1] for m in task.metrics)
    built = build_index(corpus_emb, kind=kind, target_recall=target_recall, show_progress=False)
    _, labels = IndexSearcher(built).search_labels(query_emb, min(k, len(corpus_emb)))
    rows = np.asarray(built.ids, dtype=np.int64)
    ranked = np.where(labels >= 0, rows[np.maximum(labels, 0)], -1)
    values = ranked_per_query(ranked, task.relevance, task.metrics)
    manifest = built.manifest
    return TaskScore(f"{task.name}_ann", {m: float(v.mean()) for m, v in values.items()},
                     counts={"queries": len(query_emb), "corpus": len(corpus_emb), "excluded": task.excluded},
                     details={"index_kind": manifest.kind, "index_params": manifest.search_params,
                              "index_recall_at_10": manifest.recall_at_k})


def score_zero_shot(task: ZeroShotTask, item_emb: np.ndarray, label_emb: np.ndarray) -> TaskScore:
    scored = task.truth >= 0
    if not scored.any():
        return TaskScore(task.name, None, counts={"excluded_no_value": len(scored)},
                         na_reason=f"no scored product has a value for {task.name}")
    pred = argmax_cosine(item_emb[scored], label_emb)
    truth = task.truth[scored]
    values = {"acc": accuracy(pred, truth), "macro_f1": macro_f1(pred, truth)}
    return TaskScore(task.name, {m: values[m] for m in task.metrics},
                     counts={"products": int(scored.sum()), "excluded_no_value": int((~scored).sum()),
                             "labels": len(task.labels)},
                     details=_error_sink(pred, truth, task.labels))


def _error_sink(pred: np.ndarray, truth: np.ndarray, labels: Sequence[str]) -> dict[str, object]:
    """The label that took the most wrong predictions, and its share of them.

    Why: a label text the model never learned (e.g. a value no training product has) can act
    as a hub that pulls in products of every class; one number here shows it without a rerun."""
    wrong = pred[pred != truth]
    if not len(wrong):
        return {}
    counts = np.bincount(wrong, minlength=len(labels))
    top = int(counts.argmax())
    return {"most_wrong_label": labels[top], "most_wrong_count": int(counts[top]),
            "most_wrong_share": float(counts[top] / len(wrong))}


def knn_predict(train_emb: np.ndarray, train_truth: np.ndarray, emb: np.ndarray, n_classes: int,
                k: int) -> np.ndarray:
    """Similarity-weighted vote of the k nearest training products."""
    preds = np.empty(len(emb), dtype=np.int64)
    for start, scores, idx in topk(emb, train_emb, k):
        rows = np.repeat(np.arange(len(idx)), idx.shape[1])
        votes = np.bincount(rows * n_classes + train_truth[idx].ravel(), weights=scores.ravel(),
                            minlength=len(idx) * n_classes).reshape(len(idx), n_classes)
        preds[start:start + len(idx)] = votes.argmax(axis=1)
    return preds


def linear_probe_predict(train_emb: np.ndarray, train_truth: np.ndarray, emb: np.ndarray, n_classes: int,
                         steps: int = 100, weight_decay: float = 1e-4, seed: int = 0) -> np.ndarray:
    """Multinomial logistic regression on frozen embeddings (full-batch L-BFGS)."""
    x = torch.from_numpy(np.asarray(train_emb, dtype=np.float32))
    y = torch.from_numpy(np.asarray(train_truth, dtype=np.int64))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layer = torch.nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(x), y) + weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return layer(torch.from_numpy(np.asarray(emb, dtype=np.float32))).argmax(dim=1).numpy()


def score_probe(task: ProbeTask, train_emb: np.ndarray, item_emb: np.ndarray) -> TaskScore:
    train_ok, ok = task.train_truth >= 0, task.truth >= 0
    if task.method == "knn":
        pred = knn_predict(train_emb[train_ok], task.train_truth[train_ok], item_emb[ok], task.n_classes, task.k)
    else:
        pred = linear_probe_predict(train_emb[train_ok], task.train_truth[train_ok], item_emb[ok], task.n_classes)
    truth = task.truth[ok]
    return TaskScore(task.name, {"acc": accuracy(pred, truth), "macro_f1": macro_f1(pred, truth)},
                     counts={"train": int(train_ok.sum()), "products": int(ok.sum()),
                             "excluded_no_value": int((~ok).sum())})


def distinct_labels(values: Sequence[Optional[str]]) -> list[str]:
    """Sorted distinct non-empty values: the candidate labels of a zero-shot task."""
    return sorted({v for v in values if v})


def label_indices(values: Sequence[Optional[str]], labels: Sequence[str]) -> np.ndarray:
    """Each value's index into `labels` (-1 = missing value or not a candidate label)."""
    index = {v: i for i, v in enumerate(labels)}
    return np.array([index.get(v, -1) if v else -1 for v in values], dtype=np.int64)


def category_values(products: Sequence[ProductRecord], level: int) -> list[Optional[str]]:
    return [p.category[level] if level < len(p.category) else None for p in products]


def zero_shot_tasks(products: Sequence[ProductRecord], category_levels: Sequence[str],
                    attribute_names: Sequence[str], view: ProductView = IMAGE_TITLE_VIEW,
                    attribute_metrics: tuple[str, ...] = ("acc", "macro_f1")) -> list[ZeroShotTask]:
    """cls.<level> for every category level and attr.<name> for every attribute.

    Candidate labels are the distinct values among `products`; a product whose value is
    missing is excluded from that task and counted.
    """
    columns = {f"cls.{name}": category_values(products, level) for level, name in enumerate(category_levels)}
    columns.update({f"attr.{name}": [p.attributes.get(name) for p in products] for name in attribute_names})
    tasks = []
    for name, values in columns.items():
        labels = distinct_labels(values)
        tasks.append(ZeroShotTask(name, view, labels, label_indices(values, labels),
                                  metrics=attribute_metrics if name.startswith("attr.") else ("acc", "macro_f1")))
    return tasks


QUERY_TASK_NAMES = {QueryKind.TEXT: "text2product", QueryKind.IMAGE: "image2product",
                    QueryKind.PRODUCT: "product2product"}


def query_retrieval_tasks(products: Sequence[ProductRecord], queries: Sequence[QueryRecord],
                          group_level: int = 0) -> tuple[list[RetrievalTask], dict[str, int]]:
    """One retrieval task per query kind against the full product view.

    Queries whose positive product is not in `products` cannot be scored; they are
    excluded and counted per kind (returned and recorded in each task).
    """
    position = {p.product_id: i for i, p in enumerate(products)}
    tasks, missing = [], {}
    for kind, name in QUERY_TASK_NAMES.items():
        of_kind = [q for q in queries if q.kind == kind]
        usable = [q for q in of_kind if q.positive_id in position]
        missing[name] = len(of_kind) - len(usable)
        if not usable:
            continue
        positives = np.array([position[q.positive_id] for q in usable], dtype=np.int64)
        groups = np.array([products[i].category[min(group_level, len(products[i].category) - 1)]
                           for i in positives], dtype=object)
        tasks.append(RetrievalTask(name, list(usable), FULL_VIEW,
                                   Relevance.from_positives(positives, len(products)),
                                   groups=groups, excluded=missing[name]))
    return tasks, missing
