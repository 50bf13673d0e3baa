"""Import ultralytics so that it never goes online and never writes outside our directories.

ultralytics reads two environment variables exactly once, at its first import:
`YOLO_OFFLINE` (decides `ONLINE`, which gates analytics events and download attempts) and
`YOLO_CONFIG_DIR` (where `settings.json` lives: analytics `sync`, integration callbacks,
default runs/weights/datasets directories, downloaded fonts). So the environment has to
be set before that import, and this module is the only place in moon that imports
ultralytics for the first time.

Reading a dataset also calls `check_font("Arial.ttf")`, which probes the ultralytics asset
server when the font is not in the config dir. Training runs with `plots=False`, so no
font is ever drawn with; we place matplotlib's bundled DejaVu Sans under that name in the
config dir so the check is satisfied locally and nothing is requested.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

SETTINGS_SUBDIR = "Ultralytics"
"""ultralytics appends this to YOLO_CONFIG_DIR."""

_OFF = {"sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
        "raytune": False, "tensorboard": False, "wandb": False, "vscode_msg": False,
        "openvino_msg": False}
"""Settings that would send data somewhere or load third-party logging callbacks."""


def default_settings_dir() -> Path:
    """Where prediction-only processes keep ultralytics settings (per user, outside any model dir)."""
    return Path(tempfile.gettempdir()) / f"moon-ultralytics-{os.getuid()}"


def import_ultralytics(settings_dir: Path) -> ModuleType:
    """Return the `ultralytics` module, imported offline with its settings under `settings_dir`.

    If ultralytics was already imported in this process, its settings location is fixed;
    then only the offline guarantees that do not depend on import order are applied.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    first_import = "ultralytics" not in sys.modules
    if first_import:
        settings_dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(settings_dir))
    import ultralytics
    from ultralytics import utils as yolo_utils

    config_dir = Path(yolo_utils.USER_CONFIG_DIR)
    if config_dir.resolve().is_relative_to(settings_dir.resolve()):
        yolo_utils.SETTINGS.update(**_OFF, runs_dir=str(config_dir / "runs"),
                                   weights_dir=str(config_dir / "weights"),
                                   datasets_dir=str(config_dir / "datasets"))
    elif first_import:
        log.warning("YOLO_CONFIG_DIR is set to %s by the environment; ultralytics settings "
                    "there are used as they are", config_dir)
    _provide_font(config_dir)
    return ultralytics


def _provide_font(config_dir: Path) -> None:
    target = config_dir / "Arial.ttf"
    if target.exists():
        return
    from matplotlib import font_manager

    source = Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))
    config_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=config_dir, prefix=".Arial.", suffix=".tmp")
    os.close(fd)
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
