"""Model weights on disk: safetensors, written atomically, loaded strictly with clear errors.

A strict load is what makes a saved model reload bit-exactly; when it fails (a config edited
after saving, weights from another model), the error lists the offending tensor names and
shapes instead of a PyTorch stack trace.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_FILE = "model.safetensors"


def save_weights(state: dict[str, torch.Tensor], path: Union[str, Path]) -> None:
    """Contiguous CPU copies -> `path` via a temporary file in the same directory."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _describe(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_weights(model: nn.Module, path: Union[str, Path]) -> None:
    """Load every tensor of `path` into `model`; any missing/extra/misshaped key is an error."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: weights file missing")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
                    for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"missing from file: {_describe(missing)}")
    if unexpected:
        problems.append(f"not in the model: {_describe(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch: {_describe(shapes)}")
    if problems:
        raise ValueError(f"{path}: weights do not match the model config ({'; '.join(problems)}); "
                         "was moon_config.json edited after saving?")
    model.load_state_dict(state, strict=True)


def weights_digest(module: nn.Module, head: int = 1024) -> str:
    """A cheap fingerprint of the current weights (names, shapes, the first `head` values and
    the float64 sum of every tensor), so configs of differently trained models hash apart."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1)
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(flat[:head].to("cpu", torch.float32).numpy().tobytes())
            digest.update(flat.to(torch.float64).sum().cpu().numpy().tobytes())
    return digest.hexdigest()
