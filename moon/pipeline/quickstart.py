"""The quickstart job: from nothing to a scorecard in one run directory, resumable.

Stages (RUN/<nn-name>/, see moon.pipeline.stages for the resume rules):
  01-data            generate MBE-synth (`products`, `seed`)
  02-detector        train the YOLO core-region detector briefly, on a bounded sample of the
                     data (its first `detector_products` train products and a quarter as many
                     val products, with their image queries), so its cost does not grow with
                     --products
  03-crop            add the detector's CORE box to every product and query image
  04-negatives       mine same-category / kNN hard negatives for the training pairs with the
                     training-free fallback embedder (no trained model exists yet)
  05-init            the untrained MOON model (tokenizer from the train split): the start of
                     the MOON training and the "untrained" column of the scorecard
  06-train-moon      train it with DeepSpeed as the MOON recipe says, for `steps` steps
  07-train-openclip  train the open_clip baseline with the same budget: the same steps,
                     queries per batch and accumulation as MOON, on the same data and negatives
  08-export          embed the test products with the trained MOON model
  09-index           build the automatic FAISS index over them (+ one example search)
  10..12-bench-*     MBE tasks on the test split for MOON, open_clip and untrained MOON

Scoring is injected (`Scorer`): the benchmark lives above moon/ (benchmarks.mbe), and
moon/ never imports it; the CLI passes a scorer built on it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, ConfigDict, Field

from moon.data.records import QueryKind
from moon.data.shards import DatasetWriter, atomic_write_bytes, atomic_write_json, open_dataset
from moon.pipeline.scorecard import build_scorecard, scorecard_markdown
from moon.pipeline.stages import Stage, StageOutcome, StageRunner, stage_folder

RECIPE_DIR = Path(__file__).resolve().parents[2] / "recipes"
"""The repository's recipes (the quickstart runs from a checkout: `pip install -e .`)."""

STAGES = ("data", "detector", "crop", "negatives", "init", "train-moon", "train-openclip", "export", "index",
          "bench-moon", "bench-openclip", "bench-untrained")
"""The stage order, which also numbers the stage folders (01-data ... 12-bench-untrained)."""

SCORECARD_JSON = "scorecard.json"
SCORECARD_MD = "scorecard.md"
BENCH_SPLIT = "test"

Scorer = Callable[[Path, Path, Path], dict[str, Any]]
"""(model dir, dataset dir, result file to write) -> {"model_id", "metrics": {name: value|None}, ...}."""


class QuickstartConfig(BaseModel):
    """Everything the quickstart does; the defaults fit about 20 minutes on 2 CPU cores."""

    model_config = ConfigDict(extra="forbid")

    run_dir: Path = Path("runs/quickstart")
    products: int = Field(1500, ge=100, description="MBE-synth products over all splits (10% are test)")
    steps: int = Field(40, gt=0, description=(
        "training steps of both models (the same budget); 40 steps of the quickstart recipe keep the whole "
        "run near 20 minutes on 2 CPU cores (the recipe's own step count is for a longer run)"))
    seed: int = 0
    recipe: Path = RECIPE_DIR / "quickstart-cpu.yaml"
    baseline_recipe: Path = RECIPE_DIR / "openclip-baseline-cpu.yaml"
    image_size: int = Field(128, ge=64, le=512)
    detector_products: int = Field(200, ge=10, description="train products whose images train the detector")
    detector_epochs: int = Field(12, ge=1, description="epochs of `moon crop train`'s default network and optimiser")
    detector_imgsz: int = Field(96, ge=32)
    negatives_k: int = Field(8, ge=1, description="hard negatives mined per training pair")
    workers: int = Field(2, ge=1, description="MBE-synth rendering processes (output does not depend on it)")
    show_progress: bool = True


@dataclass
class QuickstartResult:
    config: QuickstartConfig
    outcomes: dict[str, StageOutcome]
    scorecard: dict[str, Any]


def _file_sha256(path: Path) -> str:
    if not path.is_file():
        raise ValueError(f"{path}: recipe file does not exist (pass --recipe / --baseline-recipe)")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _with_changes(recipe, where: str, changes: dict[str, Any]):
    """The recipe with `changes` (dotted keys) applied, validated again (paths checked).

    Only fields that differ from their defaults are carried over, so the second validation
    sees what a recipe file would say (not defaults echoed back in normalised form).
    """
    from moon.train.recipe import parse_recipe

    tree = recipe.model_dump(mode="json", exclude_defaults=True)
    for dotted, value in changes.items():
        _set(tree, dotted, value)
    return parse_recipe(tree, where)


def _budget(recipe, total: int) -> dict[str, Any]:
    """Steps, warmup and checkpoint interval of a `total`-step run of `recipe`.

    Warmup is capped at a fifth of the run so that a short run still decays; checkpoints
    come at least four times per run so that an interrupted training loses little.
    """
    every = recipe.run.checkpoint_every
    return {"optim.steps": total,
            "optim.warmup_steps": min(recipe.optim.warmup_steps, max(1, total // 5)),
            "run.checkpoint_every": every if 0 < every <= total // 4 else max(1, total // 4)}


def _dataset_counts(path: Path) -> dict[str, int]:
    return {key: table.count for key, table in open_dataset(path).manifest.tables.items()}


class Quickstart:
    """The stages of one quickstart run (see module docstring); `run()` executes them."""

    def __init__(self, config: QuickstartConfig, scorer: Scorer):
        from moon.train.recipe import load_recipe

        self.config = config
        self.scorer = scorer
        self.run_dir = Path(config.run_dir)
        self.moon_recipe = load_recipe(config.recipe, check_paths=False)
        self.baseline_recipe = load_recipe(config.baseline_recipe, check_paths=False)
        model = self.moon_recipe.model
        if model.architecture != "moon" or model.name is None:
            raise ValueError(f"{config.recipe.name}: model: the quickstart needs a MOON recipe that builds its "
                             "model from a named config (model.architecture: moon, model.name: moon-tiny)")
        if self.baseline_recipe.model.architecture != "open_clip":
            raise ValueError(f"{config.baseline_recipe.name}: model.architecture: expected open_clip for the baseline")

    # ---- paths (each stage's outputs, fixed by the run directory) -------------------------------

    def path(self, stage: str, *parts: str) -> Path:
        return self.run_dir.joinpath(stage_folder(STAGES.index(stage) + 1, stage), *parts)

    @property
    def data(self) -> Path:
        return self.path("data", "mbe-synth")

    @property
    def detector(self) -> Path:
        return self.path("detector", "detector")

    @property
    def cropped(self) -> Path:
        return self.path("crop", "mbe-synth-cropped")

    @property
    def negatives(self) -> Path:
        return self.path("negatives", "negatives.parquet")

    @property
    def untrained(self) -> Path:
        return self.path("init", "model")

    def trained(self, stage: str) -> Path:
        from moon.train.trainer import MODEL_DIR

        return self.path(stage, "run", MODEL_DIR)

    # ---- stages --------------------------------------------------------------------------------

    def stage_data(self, out: Path) -> dict[str, Any]:
        from moon.data.synth import SynthConfig, generate

        c = self.config
        generate(SynthConfig(products=c.products, seed=c.seed, workers=c.workers, image_size=c.image_size),
                 self.data, overwrite=True, show_progress=c.show_progress)
        return {"dataset": str(self.data), "counts": _dataset_counts(self.data)}

    def _detector_sample(self, out: Path) -> dict[str, int]:
        """The bounded detector training set: first N train / N/4 val products + their image queries."""
        source = open_dataset(self.data)
        limits = {"train": self.config.detector_products, "val": max(2, self.config.detector_products // 4)}
        counts: dict[str, int] = {}
        with DatasetWriter(out, name=f"{source.name}-detector-sample", category_levels=source.manifest.category_levels,
                           attribute_names=source.manifest.attribute_names, overwrite=True) as writer:
            for split, limit in limits.items():
                if not source.has(split, "products"):
                    continue
                kept = set()
                for product in itertools.islice(source.products(split), limit):
                    writer.add_product(split, product)
                    kept.add(product.product_id)
                queries = 0
                if source.has(split, "queries"):
                    for query in source.queries(split):
                        if query.image is not None and query.positive_id in kept:
                            writer.add_query(split, query)
                            queries += 1
                counts[f"{split}/products"], counts[f"{split}/image_queries"] = len(kept), queries
        return counts

    def stage_detector(self, out: Path) -> dict[str, Any]:
        from moon.crop.detector import train_detector

        c = self.config
        sample = self._detector_sample(out / "sample")
        detector = train_detector(out / "sample", self.detector, overwrite=True, epochs=c.detector_epochs,
                                  imgsz=c.detector_imgsz, seed=c.seed)
        return {"detector": str(self.detector), "detector_id": detector.detector_id, "sample": sample,
                "images": detector.info.data.get("images", {}), "metrics": detector.info.metrics}

    def stage_crop(self, out: Path) -> dict[str, Any]:
        from moon.crop.detector import Detector
        from moon.crop.run import crop_dataset

        report = crop_dataset(Detector.load(self.detector), self.data, self.cropped, batch_size=32,
                              show_progress=self.config.show_progress)
        if not report.complete:
            raise RuntimeError(f"{self.cropped}: the crop run did not finish every shard ({report})")
        return {"dataset": str(self.cropped), "images": report.images, "fallbacks": report.fallbacks,
                "fallback_share": report.fallbacks / max(report.images, 1),
                "images_per_second": report.images_per_second}

    def stage_negatives(self, out: Path) -> dict[str, Any]:
        from moon.negatives.fallback import FallbackEmbedder
        from moon.negatives.miner import MinerConfig, mine_negatives

        config = MinerConfig(k=self.config.negatives_k, seed=self.config.seed)
        report = mine_negatives(FallbackEmbedder(), self.cropped, "train", self.negatives, config,
                                show_progress=self.config.show_progress)
        return {"sidecar": str(self.negatives), "model": report.model_id, "pairs": report.pairs,
                "negatives": report.negatives, "short_pairs": report.short_pairs, "per_policy": report.per_policy}

    def stage_init(self, out: Path) -> dict[str, Any]:
        from moon.model.bootstrap import init_model

        section = self.moon_recipe.model
        model = init_model(section.name, self.untrained, corpus=self.cropped, corpus_splits=["train"],
                           overrides=section.overrides or None, seed=self.config.seed)
        return {"model": str(self.untrained), "config": section.name,
                "parameters": sum(p.numel() for p in model.parameters())}

    def _train(self, recipe, where: str, out: Path) -> dict[str, Any]:
        from moon.train.checkpoint import CheckpointManager
        from moon.train.trainer import SUMMARY_FILE, train

        run = out / "run"
        resume = CheckpointManager(run / "checkpoints", 1, 0, 1).latest() is not None
        result = train(recipe, out_dir=run, resume=resume, show_progress=self.config.show_progress)
        summary = json.loads((run / SUMMARY_FILE).read_text())
        return {"recipe": where, "model": str(result.model_dir), "steps": result.steps,
                "batch_size": recipe.optim.batch_size, "grad_accum": recipe.optim.grad_accum,
                "resumed_from": summary.get("resumed_from"), "train_wall_seconds": summary.get("wall_seconds"),
                "parameters": summary.get("parameters"), "val_before": summary.get("val_before"),
                "val_after": summary.get("val_after")}

    def moon_training_recipe(self):
        changes = {"data.dataset": str(self.cropped), "data.negatives": str(self.negatives),
                   "run.seed": self.config.seed, "model.name": None, "model.dir": str(self.untrained),
                   **_budget(self.moon_recipe, self.config.steps)}
        return _with_changes(self.moon_recipe, self.config.recipe.name, changes)

    def baseline_training_recipe(self):
        moon = self.moon_training_recipe()
        changes = {"data.dataset": str(self.cropped), "data.negatives": str(self.negatives),
                   "run.seed": self.config.seed, "optim.batch_size": moon.optim.batch_size,
                   "optim.grad_accum": moon.optim.grad_accum,
                   **_budget(self.baseline_recipe, moon.optim.steps)}
        return _with_changes(self.baseline_recipe, self.config.baseline_recipe.name, changes)

    def stage_train_moon(self, out: Path) -> dict[str, Any]:
        return self._train(self.moon_training_recipe(), self.config.recipe.name, out)

    def stage_train_openclip(self, out: Path) -> dict[str, Any]:
        return self._train(self.baseline_training_recipe(), self.config.baseline_recipe.name, out)

    def stage_export(self, out: Path) -> dict[str, Any]:
        from moon.index.export import export_embeddings
        from moon.model.registry import load_embedder

        result = export_embeddings(load_embedder(self.trained("train-moon")), self.cropped, BENCH_SPLIT,
                                   out / "export", show_progress=self.config.show_progress)
        manifest = result.manifest
        if manifest is None:
            raise RuntimeError(f"{out / 'export'}: export incomplete ({result.chunks_total} chunks expected)")
        return {"export": str(out / "export"), "count": manifest.count, "dim": manifest.dim}

    def stage_index(self, out: Path) -> dict[str, Any]:
        from moon.index.faiss_index import build_index, write_index_dir
        from moon.index.search import IndexSearcher
        from moon.model.registry import load_embedder

        built = build_index(self.path("export", "export"), kind="auto", show_progress=self.config.show_progress)
        manifest = write_index_dir(built, out / "index", overwrite=True)
        example = self._example_search(IndexSearcher.load(out / "index"), load_embedder(self.trained("train-moon")))
        return {"index": str(out / "index"), "kind": manifest.kind, "count": manifest.count,
                "recall_at_10": manifest.recall_at_k, "decision": manifest.tuning.decision if manifest.tuning else
                "exact (Flat): the corpus is small enough to search exactly", "example": example}

    def _example_search(self, searcher, embedder) -> dict[str, Any]:
        """The first text query of the test split against the index: where its product ranks."""
        query = next((q for q in open_dataset(self.cropped).queries(BENCH_SPLIT) if q.kind == QueryKind.TEXT), None)
        if query is None:
            return {}
        vector = embedder.encode_queries([query], show_progress=False)
        hits = searcher.search(vector, k=10)[0]
        rank = next((i for i, h in enumerate(hits, 1) if h.id == query.positive_id), None)
        return {"query": query.text, "positive_id": query.positive_id, "positive_rank_in_top10": rank,
                "top3": [{"id": h.id, "score": round(h.score, 4), "title": h.title} for h in hits[:3]]}

    def _bench(self, model: Path) -> Callable[[Path], dict[str, Any]]:
        return lambda out: self.scorer(model, self.cropped, out / "results.json")

    def stages(self) -> list[Stage]:
        c = self.config
        recipes = {"moon_recipe_sha256": _file_sha256(c.recipe),
                   "baseline_recipe_sha256": _file_sha256(c.baseline_recipe)}
        stages = [
            Stage("data", self.stage_data, {"products": c.products, "seed": c.seed, "image_size": c.image_size}),
            Stage("detector", self.stage_detector, {"products": c.detector_products, "epochs": c.detector_epochs,
                                                    "imgsz": c.detector_imgsz, "seed": c.seed}, ("data",)),
            Stage("crop", self.stage_crop, {}, ("data", "detector")),
            Stage("negatives", self.stage_negatives, {"k": c.negatives_k, "seed": c.seed}, ("crop",)),
            Stage("init", self.stage_init, {"recipe": recipes["moon_recipe_sha256"], "seed": c.seed}, ("crop",)),
            Stage("train-moon", self.stage_train_moon, {**recipes, "steps": c.steps, "seed": c.seed},
                  ("crop", "negatives", "init")),
            Stage("train-openclip", self.stage_train_openclip, {**recipes, "steps": c.steps, "seed": c.seed},
                  ("crop", "negatives")),
            Stage("export", self.stage_export, {"split": BENCH_SPLIT}, ("crop", "train-moon")),
            Stage("index", self.stage_index, {"kind": "auto"}, ("export",)),
            Stage("bench-moon", self._bench(self.trained("train-moon")), {"split": BENCH_SPLIT},
                  ("crop", "train-moon")),
            Stage("bench-openclip", self._bench(self.trained("train-openclip")), {"split": BENCH_SPLIT},
                  ("crop", "train-openclip")),
            Stage("bench-untrained", self._bench(self.untrained), {"split": BENCH_SPLIT}, ("crop", "init")),
        ]
        by_name = {stage.name: stage for stage in stages}
        return [by_name[name] for name in STAGES]

    def run(self, on_start: Optional[Callable[[str], None]] = None,
            on_end: Optional[Callable[[StageOutcome], None]] = None) -> QuickstartResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        runner = StageRunner(self.run_dir, on_start, on_end)
        runner.run_all(self.stages())
        outcomes = runner.outcomes
        card = build_scorecard(self.config.model_dump(mode="json", exclude={"show_progress"}), outcomes,
                               models={"moon": "bench-moon", "open_clip": "bench-openclip",
                                       "moon_untrained": "bench-untrained"},
                               training={"moon": "train-moon", "open_clip": "train-openclip"})
        atomic_write_json(self.run_dir / SCORECARD_JSON, card)
        atomic_write_bytes(self.run_dir / SCORECARD_MD, scorecard_markdown(card).encode())
        return QuickstartResult(self.config, outcomes, card)


def run_quickstart(config: QuickstartConfig, scorer: Scorer, on_start: Optional[Callable[[str], None]] = None,
                   on_end: Optional[Callable[[StageOutcome], None]] = None) -> QuickstartResult:
    """Run (or resume) the quickstart; writes RUN/scorecard.json and RUN/scorecard.md."""
    return Quickstart(config, scorer).run(on_start, on_end)
