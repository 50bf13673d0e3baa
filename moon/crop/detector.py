"""Train an ultralytics YOLO product detector offline, save it without pickles, predict in batches.

Training: the boxes of a moon dataset are exported as a standard YOLO dataset (a YOLO
dataset directory is accepted as is), and ultralytics trains from a model yaml (a fresh
network, nothing downloaded) or from a local `.pt` the user supplies. A user `.pt` is read
by ultralytics with `torch.load(weights_only=False)`, i.e. it is unpickled: pass only files
you trust. ultralytics' own `best.pt` (written by this training) is unpickled once to
extract the weights, which are then saved as safetensors.

The default network is `moon-yolo-tiny.yaml`, shipped in moon/crop/models: YOLOv8 at a
fraction of 'n' (see that file), because from scratch on CPU the number of optimizer steps
decides quality, and a smaller network buys more of them in the same minutes. The other
defaults of DetectorTrainConfig were measured on MBE-synth the same way
(benchmarks/perf/cropper.py).

A saved detector directory holds `detector.safetensors` (the weights), `detector.json`
(architecture, class names, image size, training config, metrics) and the ultralytics run
it came from. `Detector.load` rebuilds the network from the architecture and loads the
safetensors, so loading a detector never unpickles anything. The detector id is the
sha256 of the weights file; crops record it (`source="yolo:<id>"`) as provenance, and
loading checks the file still matches it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moon.crop.boxes import Detection
from moon.crop.ultralytics_env import default_settings_dir, import_ultralytics
from moon.crop.yolo_data import ClassMode, YoloDataset, export_yolo_dataset, is_moon_dataset, open_yolo_dataset
from moon.data.records import DataError, format_validation_error
from moon.data.shards import atomic_write_json

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "moon-yolo-tiny.yaml"
WEIGHTS_FILE = "detector.safetensors"
INFO_FILE = "detector.json"
FORMAT_VERSION = 1


class DetectorTrainConfig(BaseModel):
    """What `train_detector` trains with; stored in detector.json.

    The defaults train a detector that beats a centre crop on MBE-synth (128 px scenes,
    ~1800 train images) in about 3 CPU-minutes on 2 cores; each was chosen by measurement
    (table in benchmarks/perf/cropper.py):
    - the tiny packaged network at `imgsz` 96: a from-scratch YOLO sits on a loss plateau
      for its first few hundred steps, so cheap steps matter more than capacity;
    - AdamW at lr0 0.002 leaves that plateau within ~2 epochs where SGD (0.02-0.05) needs
      5 or more, and no warmup, which would spend the short run at a low rate;
    - no mosaic: it tiles four scenes into one, so "the main product" stops being the
      largest object, which is what the crop policy relies on;
    - no validation after every epoch (only after the last): on a short run it costs
      ~10% of the time and the last epoch is the best one anyway.
    `nbs` (ultralytics' nominal batch size) is set to `batch`, so every batch is one
    optimizer step: the default 64 accumulates gradients over 64 images, which leaves a
    small product dataset with only a handful of updates per epoch.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL, description=(
        "a model yaml shipped with moon (moon/crop/models), an ultralytics model yaml (fresh network, "
        "e.g. yolov8n.yaml) or a local .pt"))
    epochs: int = Field(12, ge=1)
    imgsz: int = Field(96, ge=32, description="training and prediction image size (pixels)")
    classes: ClassMode = "product"
    seed: int = 0
    batch: int = Field(16, ge=1)
    optimizer: Literal["SGD", "Adam", "AdamW"] = "AdamW"
    lr0: float = Field(0.002, gt=0.0, description="initial learning rate (SGD wants ~0.01-0.03)")
    mosaic: float = Field(0.0, ge=0.0, le=1.0, description="probability of mosaic augmentation")
    scale: float = Field(0.2, ge=0.0, lt=1.0, description="random zoom augmentation: gain in [1-scale, 1+scale]")
    translate: float = Field(0.05, ge=0.0, le=0.5, description="random shift augmentation, fraction of the image")
    warmup_epochs: float = Field(0.0, ge=0.0)
    validate_every_epoch: bool = Field(False, description=(
        "validate after every epoch (keeps the best epoch, enables `patience`); else only after the last"))
    patience: int = Field(50, ge=1, description="epochs without val improvement before stopping")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="train images held out when there is no val split")
    workers: int = Field(0, ge=0, description="dataloader workers (0: in the main process)")
    device: Optional[str] = Field(None, description="'cpu', '0', ...; None picks cuda:0 when available")


class DetectorInfo(BaseModel):
    """Everything about a trained detector except its weights (detector.json)."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    detector_id: str
    class_names: list[str]
    imgsz: int
    architecture: dict[str, Any] = Field(description="the ultralytics model yaml as a dict")
    train: DetectorTrainConfig
    data: dict[str, Any] = Field(default_factory=dict, description="the YOLO dataset trained on")
    metrics: dict[str, float] = Field(default_factory=dict)
    ultralytics_version: str = ""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _device(requested: Optional[str]) -> str:
    if requested is not None:
        return requested
    return "0" if torch.cuda.is_available() else "cpu"


def packaged_models() -> list[str]:
    """Names of the model yamls shipped with moon, usable as `model=`."""
    return sorted(p.name for p in MODELS_DIR.glob("*.yaml"))


def resolve_model(model: str) -> str:
    """The path or name ultralytics should build `model` from; refuses anything it would download."""
    if model in packaged_models():
        return str(MODELS_DIR / model)
    lower = model.lower()
    if "://" in model:
        raise ValueError(f"model {model!r}: URLs are not accepted; moon never downloads weights "
                         f"(pass a model yaml such as {DEFAULT_MODEL}, or a local .pt file)")
    if lower.endswith(".pt"):
        if not Path(model).is_file():
            raise ValueError(f"model {model!r}: local .pt file not found (moon never downloads weights; "
                             f"pass a model yaml such as {DEFAULT_MODEL} to train from scratch)")
    elif not lower.endswith((".yaml", ".yml")):
        raise ValueError(f"model {model!r}: expected a model yaml ({', '.join(packaged_models())}, "
                         "an ultralytics one such as yolov8n.yaml, or a path) or a local .pt file")
    return model


class Detector:
    """A trained product detector: batched prediction in original-image pixel coordinates."""

    def __init__(self, network: torch.nn.Module, info: DetectorInfo, path: Optional[Path] = None,
                 device: Optional[str] = None):
        self.network = network.eval()
        self.info = info
        self.path = path
        self.device = _device(device)
        self._predictor = None

    @property
    def detector_id(self) -> str:
        return self.info.detector_id

    @property
    def source(self) -> str:
        """Provenance string stored in every box this detector produces."""
        return f"yolo:{self.detector_id[:16]}"

    @classmethod
    def load(cls, path: Union[str, Path], device: Optional[str] = None) -> "Detector":
        """Load a detector directory written by `train_detector` (safetensors; nothing unpickled)."""
        path = Path(path)
        info_path, weights_path = path / INFO_FILE, path / WEIGHTS_FILE
        if not info_path.is_file() or not weights_path.is_file():
            raise DataError(f"{path}: not a moon detector (expected {INFO_FILE} and {WEIGHTS_FILE}; "
                            "train one with `moon crop train`)")
        try:
            info = DetectorInfo.model_validate_json(info_path.read_text())
        except ValidationError as exc:
            raise DataError(format_validation_error(exc, str(info_path))) from exc
        if info.format_version != FORMAT_VERSION:
            raise DataError(f"{info_path}: format_version {info.format_version} is not supported "
                            f"(expected {FORMAT_VERSION})")
        digest = file_sha256(weights_path)
        if digest != info.detector_id:
            raise DataError(f"{weights_path}: sha256 {digest[:16]} does not match detector_id "
                            f"{info.detector_id[:16]} in {INFO_FILE}; the weights were changed")
        import_ultralytics(default_settings_dir())
        from safetensors.torch import load_file
        from ultralytics.nn.tasks import DetectionModel

        network = DetectionModel(cfg=copy.deepcopy(info.architecture), nc=len(info.class_names), verbose=False)
        network.load_state_dict(load_file(str(weights_path)), strict=True)
        network.names = dict(enumerate(info.class_names))
        return cls(network.float(), info, path, device)

    def _predictor_for(self, conf: float):
        if self._predictor is None:
            from ultralytics.models.yolo.detect import DetectionPredictor

            self._predictor = DetectionPredictor(overrides=dict(
                imgsz=self.info.imgsz, conf=conf, iou=0.7, max_det=50, device=self.device,
                verbose=False, save=False))
            self._predictor.setup_model(self.network, verbose=False)
        self._predictor.args.conf = conf
        return self._predictor

    def predict(self, images: Sequence[Image.Image], batch_size: int = 32,
                conf: float = 0.01) -> list[list[Detection]]:
        """Detections per image (any class), most confident first, for images of any size."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        predictor = self._predictor_for(conf)
        out: list[list[Detection]] = []
        for start in range(0, len(images), batch_size):
            batch = [img.convert("RGB") for img in images[start:start + batch_size]]
            for result in predictor(source=batch):
                boxes = result.boxes
                xyxy = boxes.xyxy.cpu().tolist()
                confs = boxes.conf.cpu().tolist()
                classes = boxes.cls.cpu().tolist()
                dets = [Detection(*b, confidence=float(c), class_id=int(k))
                        for b, c, k in zip(xyxy, confs, classes)]
                out.append(sorted(dets, key=lambda d: -d.confidence))
        return out


def resolve_training_data(data: Union[str, Path], work_dir: Path, classes: ClassMode, seed: int,
                          val_fraction: float) -> YoloDataset:
    """A moon dataset is exported to `work_dir/yolo_dataset`; a YOLO dataset is used as is."""
    if is_moon_dataset(data):
        return export_yolo_dataset(data, work_dir / "yolo_dataset", classes=classes,
                                   val_fraction=val_fraction, seed=seed)
    path = Path(data)
    if path.is_dir() and not (path / "data.yaml").is_file():
        raise DataError(f"{path}: neither a moon dataset (manifest.json) nor a YOLO dataset (data.yaml)")
    if not path.exists():
        raise DataError(f"{path}: not found (expected a moon dataset or a YOLO dataset directory)")
    return open_yolo_dataset(path)


def train_detector(data: Union[str, Path], out_dir: Union[str, Path], *, overwrite: bool = False,
                   **config: Any) -> Detector:
    """Train a detector on `data` (moon dataset or YOLO dataset dir) into `out_dir`.

    `config` fields are those of DetectorTrainConfig (model, epochs, imgsz, classes, seed,
    batch, ...); unset ones take its measured defaults. Returns the loaded detector; its
    `info.metrics` holds val (and, when the data has a test split, test) mAP50 and mAP50-95.
    """
    try:
        cfg = DetectorTrainConfig(**config)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, "detector config")) from exc
    model_source = resolve_model(cfg.model)
    out_dir = Path(out_dir)
    if (out_dir / INFO_FILE).exists() and not overwrite:
        raise ValueError(f"{out_dir}: already holds a detector ({INFO_FILE}); choose another "
                         "directory or pass overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    yolo_data = resolve_training_data(data, out_dir, cfg.classes, cfg.seed, cfg.val_fraction)
    if cfg.classes == "leaf" and not is_moon_dataset(data):
        log.info("classes='leaf' only applies when exporting a moon dataset; the YOLO dataset's "
                 "own classes are used")

    ultralytics = import_ultralytics(out_dir / "ultralytics")
    device = _device(cfg.device)
    try:
        model = ultralytics.YOLO(model_source)
    except FileNotFoundError as exc:
        raise ValueError(f"model {cfg.model!r}: not a local file nor an ultralytics model config ({exc})") from exc
    run_dir = out_dir / "runs"
    train_args = dict(data=str(yolo_data.data_yaml), epochs=cfg.epochs, imgsz=cfg.imgsz, batch=cfg.batch,
                      nbs=cfg.batch, optimizer=cfg.optimizer, lr0=cfg.lr0, mosaic=cfg.mosaic, scale=cfg.scale,
                      translate=cfg.translate, close_mosaic=0 if cfg.mosaic == 0 else min(10, cfg.epochs // 4),
                      warmup_epochs=cfg.warmup_epochs, val=cfg.validate_every_epoch, patience=cfg.patience,
                      seed=cfg.seed, deterministic=True, workers=cfg.workers, device=device,
                      amp=device != "cpu", plots=False, project=str(run_dir), name="train",
                      exist_ok=True, verbose=False)
    metrics_obj = model.train(**train_args)
    best = Path(model.trainer.best)
    if not best.is_file():
        raise RuntimeError(f"ultralytics finished without writing {best}")
    metrics = _metrics("val", metrics_obj)
    trained = ultralytics.YOLO(str(best))
    if "test" in yolo_data.splits:
        test = trained.val(data=str(yolo_data.data_yaml), split="test", imgsz=cfg.imgsz, batch=cfg.batch,
                           device=device, plots=False, verbose=False, project=str(run_dir), name="test",
                           exist_ok=True)
        metrics.update(_metrics("test", test))
    return _save(trained.model, cfg, yolo_data, metrics, out_dir, ultralytics.__version__, device)


def _metrics(prefix: str, result) -> dict[str, float]:
    return {f"{prefix}_map50": float(result.box.map50), f"{prefix}_map50_95": float(result.box.map)}


def _save(network: torch.nn.Module, cfg: DetectorTrainConfig, yolo_data: YoloDataset,
          metrics: dict[str, float], out_dir: Path, version: str, device: str) -> Detector:
    from safetensors.torch import save_file

    network = network.float().cpu()
    state = {k: v.detach().contiguous() for k, v in network.state_dict().items()}
    tmp = out_dir / f".{WEIGHTS_FILE}.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, out_dir / WEIGHTS_FILE)
    names = network.names
    class_names = [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else list(names)
    info = DetectorInfo(detector_id=file_sha256(out_dir / WEIGHTS_FILE), class_names=class_names,
                        imgsz=cfg.imgsz, architecture=json.loads(json.dumps(network.yaml)), train=cfg,
                        data=yolo_data.to_json(), metrics=metrics, ultralytics_version=version)
    atomic_write_json(out_dir / INFO_FILE, info.model_dump(mode="json"))
    return Detector.load(out_dir, device=device)

