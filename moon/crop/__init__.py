"""Core-region cropper: a YOLO product detector and the policy that picks one CORE box per image.

detector (train offline, load from safetensors, batched predict), boxes (crop policy),
yolo_data (moon dataset <-> YOLO dataset dir), run (resumable `crop run` over a dataset),
ultralytics_env (the only place ultralytics is first imported: offline, own settings dir).
"""

from moon.crop.boxes import CropPolicy, Detection, choose_core_box
from moon.crop.detector import Detector, DetectorTrainConfig, train_detector
from moon.crop.run import CropReport, crop_dataset

__all__ = ["CropPolicy", "CropReport", "Detection", "Detector", "DetectorTrainConfig", "choose_core_box",
           "crop_dataset", "train_detector"]
