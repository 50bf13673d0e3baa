"""The YOLO cropper trained offline on tiny scenes beats a centre crop and reloads exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moon.crop.boxes import CropPolicy, box_iou, centre_box, choose_core_box
from moon.crop.detector import (
    DEFAULT_MODEL,
    INFO_FILE,
    MODELS_DIR,
    WEIGHTS_FILE,
    Detector,
    DetectorTrainConfig,
    resolve_model,
    train_detector,
)
from moon.crop.ultralytics_env import default_settings_dir, import_ultralytics
from moon.crop.yolo_data import open_yolo_dataset
from moon.data.records import BoxRole, DataError
from moon.data.shards import open_dataset


def _test_images(dataset: Path):
    images = [im for p in open_dataset(dataset).products("test") for im in p.images]
    return [im.to_pil() for im in images], [im.box(BoxRole.TRUTH) for im in images]


@pytest.mark.slow
def test_trained_detector_beats_centre_crop(trained_detector: Detector, scene_dataset: Path):
    pils, truths = _test_images(scene_dataset)
    detections = trained_detector.predict(pils, batch_size=8)
    chosen = [choose_core_box(d, im.width, im.height, CropPolicy(pad=0.0), trained_detector.source)
              for d, im in zip(detections, pils)]
    detector_iou = float(np.mean([box_iou(c, t) for c, t in zip(chosen, truths)]))
    centre_iou = float(np.mean([box_iou(centre_box(im.width, im.height, 0.45), t)
                                for im, t in zip(pils, truths)]))
    assert detector_iou > centre_iou + 0.1, (detector_iou, centre_iou)
    assert trained_detector.info.metrics["test_map50"] > 0.3
    assert all(c.source == trained_detector.source and c.role == BoxRole.CORE for c in chosen)


@pytest.mark.slow
def test_detector_reloads_from_safetensors_with_same_predictions(trained_detector: Detector, scene_dataset):
    reloaded = Detector.load(trained_detector.path)
    assert reloaded.detector_id == trained_detector.detector_id
    pils, _ = _test_images(scene_dataset)
    assert reloaded.predict(pils[:4]) == trained_detector.predict(pils[:4])
    info = json.loads((trained_detector.path / INFO_FILE).read_text())
    assert info["train"]["imgsz"] == 128 and info["class_names"] == ["product"]
    assert info["train"]["model"] == DEFAULT_MODEL and info["architecture"]["width_multiple"] == 0.125
    assert not list(trained_detector.path.glob("ultralytics/**/*.pt")), "nothing may be downloaded"


@pytest.mark.slow
def test_exported_yolo_dataset_is_accepted_as_training_data(trained_detector: Detector):
    exported = Path(trained_detector.info.data["data_yaml"])
    yolo = open_yolo_dataset(exported.parent)
    assert yolo.class_names == ["product"]
    assert yolo.images["train"] > 0 and yolo.images["val"] > 0 and yolo.images["test"] > 0
    label = next((exported.parent / "labels" / "train").glob("*.txt")).read_text().split()
    assert label[0] == "0" and all(0.0 < float(v) <= 1.0 for v in label[1:])


@pytest.mark.slow
def test_weights_changed_after_training_are_refused(trained_detector: Detector, tmp_path: Path):
    for name in (INFO_FILE, WEIGHTS_FILE):
        (tmp_path / name).write_bytes((trained_detector.path / name).read_bytes())
    data = bytearray((tmp_path / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match detector_id"):
        Detector.load(tmp_path)


def test_default_model_is_the_packaged_tiny_network():
    path = Path(resolve_model(DetectorTrainConfig().model))
    assert path.parent == MODELS_DIR and path.is_file()
    assert resolve_model("yolov8n.yaml") == "yolov8n.yaml", "ultralytics' own configs pass through"
    import_ultralytics(default_settings_dir())
    from ultralytics.nn.tasks import DetectionModel

    tiny = DetectionModel(str(path), nc=1, verbose=False)
    nano = DetectionModel("yolov8n.yaml", nc=1, verbose=False)
    n_params = [sum(p.numel() for p in net.parameters()) for net in (tiny, nano)]
    assert n_params[0] < n_params[1] / 3, n_params


@pytest.mark.parametrize("model, message", [
    ("yolov8n.pt", "local .pt file not found"),
    ("https://example.com/yolo.pt", "URLs are not accepted"),
    ("resnet50", f"expected a model yaml \\({DEFAULT_MODEL}"),
    ("no-such-model.yaml", "not a local file nor an ultralytics model config"),
])
def test_train_refuses_models_that_would_download(scene_dataset: Path, tmp_path: Path, model, message):
    with pytest.raises(ValueError, match=message):
        train_detector(scene_dataset, tmp_path / "det", model=model, epochs=1)


def test_train_names_missing_data(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither a moon dataset"):
        train_detector(tmp_path / "empty", tmp_path / "det", epochs=1)
