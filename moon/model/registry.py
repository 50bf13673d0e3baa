"""Load any embedder the toolkit knows from a directory or a reserved name.

A saved model directory holds `embedder.json` with an `architecture` key; this module maps
it to the class that loads it, so the CLI, the exporter and the benchmark accept "a model"
without knowing which kind it is.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Union

from moon.model.api import Embedder

EMBEDDER_FILE = "embedder.json"

ARCHITECTURES: dict[str, str] = {
    "moon": "moon.model.encoder:MoonModel",
    "open_clip": "moon.model.baselines.openclip:OpenClipEmbedder",
    "minilm": "moon.model.baselines.minilm:MiniLMEmbedder",
}
"""architecture name -> 'module:Class' with a `from_pretrained(path)` classmethod."""

RESERVED_NAMES = {"minilm": "minilm"}
"""Names that load without a directory (models shipped by an installed package)."""


class ModelLoadError(ValueError):
    """The path is not a model directory this toolkit can load."""


def _load_class(architecture: str):
    try:
        target = ARCHITECTURES[architecture]
    except KeyError:
        raise ModelLoadError(
            f"unknown architecture '{architecture}'; known: {', '.join(sorted(ARCHITECTURES))}") from None
    module_name, cls_name = target.split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def write_embedder_file(path: Union[str, Path], architecture: str, **extra) -> None:
    """Called by every save_pretrained so the directory is self-describing."""
    if architecture not in ARCHITECTURES:
        raise ModelLoadError(f"unknown architecture '{architecture}'")
    Path(path, EMBEDDER_FILE).write_text(json.dumps({"architecture": architecture, **extra}, indent=2))


def load_embedder(path_or_name: Union[str, Path], **kwargs) -> Embedder:
    """Load a saved model directory, or a reserved name such as 'minilm'."""
    name = str(path_or_name)
    if name in RESERVED_NAMES and not Path(name).exists():
        return _load_class(RESERVED_NAMES[name]).from_pretrained(None, **kwargs)
    path = Path(path_or_name)
    spec = path / EMBEDDER_FILE
    if not path.is_dir():
        raise ModelLoadError(f"{path}: not a directory (expected a saved model or one of: "
                             f"{', '.join(sorted(RESERVED_NAMES))})")
    if not spec.is_file():
        raise ModelLoadError(f"{path}: missing {EMBEDDER_FILE}; not a model saved by moon")
    try:
        architecture = json.loads(spec.read_text())["architecture"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{spec}: expected a JSON object with key 'architecture' ({exc})") from exc
    return _load_class(architecture).from_pretrained(path, **kwargs)
