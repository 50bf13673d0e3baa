"""ultralytics is imported offline, with its settings (analytics off) in our directory only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
from pathlib import Path
from moon.crop.ultralytics_env import import_ultralytics
import_ultralytics(Path(sys.argv[1]))
from ultralytics import utils
print(json.dumps({"online": utils.ONLINE, "config": str(utils.USER_CONFIG_DIR),
                  "sync": utils.SETTINGS["sync"], "runs": utils.SETTINGS["runs_dir"],
                  "font": (utils.USER_CONFIG_DIR / "Arial.ttf").is_file()}))
"""


def test_first_import_is_offline_and_contained(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "home" / ".config"),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    (tmp_path / "home").mkdir()
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "settings")], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["online"] is False and state["sync"] is False and state["font"] is True
    assert Path(state["config"]).is_relative_to(tmp_path / "settings")
    assert Path(state["runs"]).is_relative_to(tmp_path / "settings")
    assert not list((tmp_path / "home").rglob("Ultralytics*")), "no ultralytics settings in the user's home"
