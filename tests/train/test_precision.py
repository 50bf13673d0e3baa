import logging

import pytest
import torch

from moon.train import precision
from moon.train.precision import configured_precision, cpu_has_native_bf16, resolve_precision
from moon.train.recipe import load_recipe


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend the CPU does (True) or does not (False) multiply bf16 in hardware."""
    def set_native(value: bool) -> None:
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: value)
    return set_native


@pytest.mark.parametrize("native, expected", [(True, "autocast-bf16"), (False, "fp32")])
def test_auto_on_cpu_uses_bf16_only_where_the_hardware_has_it(native_bf16, native, expected):
    native_bf16(native)
    assert resolve_precision("auto", use_cuda=False) == expected


@pytest.mark.parametrize("supported, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_follows_the_device(monkeypatch, supported, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert resolve_precision("auto", use_cuda=True) == expected


def test_explicit_bf16_is_kept_but_warned_about_on_an_emulating_cpu(native_bf16, caplog):
    native_bf16(False)
    with caplog.at_level(logging.WARNING, logger="moon.train.precision"):
        assert resolve_precision("autocast-bf16", use_cuda=False) == "autocast-bf16"
    assert "no native bf16" in caplog.text
    caplog.clear()
    native_bf16(True)
    with caplog.at_level(logging.WARNING, logger="moon.train.precision"):
        assert resolve_precision("autocast-bf16", use_cuda=False) == "autocast-bf16"
        assert resolve_precision("fp32", use_cuda=False) == "fp32"
    assert caplog.text == ""


def test_native_bf16_probe_reads_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not cpu_has_native_bf16()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert cpu_has_native_bf16()


def test_configured_precision_reads_back_the_generated_config(write_recipe, native_bf16):
    native_bf16(False)
    for requested, expected in [("bf16", "bf16"), ("autocast-bf16", "autocast-bf16"), ("fp32", "fp32"),
                                ("auto", "fp32")]:
        cfg = load_recipe(write_recipe(), [f"deepspeed.precision={requested}"]).deepspeed_config(world_size=1)
        assert configured_precision(cfg) == expected
