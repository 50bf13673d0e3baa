import json

import pytest
import torch

from moon.model.config import ConfigError, MoonConfig, named_config, named_configs, resolve_config
from moon.model.encoder import MoonModel


def test_named_configs_validate():
    names = named_configs()
    assert {"moon-tiny", "moon-qwen2-vl-2b", "moon-qwen2.5-vl-3b", "moon-qwen2.5-vl-7b"} <= set(names)
    for name in names:
        config = named_config(name)
        assert config.name == name
    assert named_config("moon-qwen2.5-vl-3b").backbone.family == "qwen2_5_vl"
    assert named_config("moon-tiny").backbone.checkpoint is None


def test_unknown_key_is_named(tmp_path):
    data = named_config("moon-tiny").to_json_dict()
    data["moe"]["num_expert"] = 4
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"moe\.num_expert"):
        resolve_config(path)
    with pytest.raises(ConfigError, match=r"pooling"):
        resolve_config("moon-tiny", {"pooling": "max"})
    with pytest.raises(ConfigError, match="pooling_image_share applies to pooling 'modality-mean'"):
        resolve_config("moon-tiny", {"pooling_image_share": 0.25})
    assert resolve_config("moon-tiny", {"pooling": "modality-mean", "pooling_image_share": 0.25}).pooling_image_share == 0.25


def test_overrides_and_moe_validation():
    config = resolve_config("moon-tiny", {"moe.mode": "router-only", "inputs.use_crops": False})
    assert config.moe.mode == "router-only" and config.moe.routed_experts == config.moe.num_experts
    assert not config.inputs.use_crops
    with pytest.raises(ConfigError, match="top_k"):
        resolve_config("moon-tiny", {"moe.top_k": 5})  # 6 experts guided -> 4 routed
    with pytest.raises(ConfigError, match="renormalize"):
        resolve_config("moon-tiny", {"moe.top_k": 1})
    with pytest.raises(ConfigError, match="unknown model config"):
        resolve_config("moon-huge")


def test_dtype_policy():
    config = named_config("moon-tiny")
    assert config.resolved_dtype(torch.device("cpu")) == torch.float32
    assert config.resolved_dtype(torch.device("cuda")) == torch.bfloat16
    assert resolve_config(config, {"compute_dtype": "bfloat16"}).resolved_dtype(torch.device("cpu")) == torch.bfloat16


def test_missing_checkpoint_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="backbone.checkpoint"):
        MoonModel.from_config("moon-qwen2.5-vl-3b", overrides={"backbone.checkpoint": str(tmp_path / "nope")})


def test_scratch_backbone_needs_sizes():
    with pytest.raises(Exception, match="checkpoint"):
        MoonConfig.model_validate({"backbone": {"family": "qwen2_vl"}})
