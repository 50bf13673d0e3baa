import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed

from moon.data.records import DataError, ProductView
from moon.data.shards import open_dataset
from moon.index.export import CHUNK_DIR, MANIFEST_FILE, export_embeddings, load_export
from moon.model.fingerprint import config_hash
from moon.model.registry import load_embedder

TITLE_ONLY = ProductView(images=False, crops=False, title=True, category=False, attributes=False)
REPO = Path(__file__).resolve().parents[2]


def test_export_writes_vectors_sidecar_and_manifest(tiny_text_embedder, make_dataset):
    data = make_dataset(21)
    result = export_embeddings(tiny_text_embedder, data, "test", data.parent / "ex", chunk_size=8,
                               show_progress=False)
    assert (result.chunks_total, result.chunks_written, result.chunks_skipped) == (3, 3, 0)
    manifest = result.manifest
    assert manifest.count == 21 and manifest.dim == manifest.full_dim == 32
    assert manifest.spec.config_hash == config_hash(tiny_text_embedder)
    assert manifest.spec.model_id == "tiny-bert"
    products = open_dataset(data).load_products("test")
    exported = load_export(data.parent / "ex")
    assert exported.ids == [p.product_id for p in products]
    np.testing.assert_allclose(np.linalg.norm(exported.vectors, axis=1), 1.0, atol=1e-5)
    direct = tiny_text_embedder.encode_products(products, show_progress=False)
    np.testing.assert_allclose(exported.vectors, direct, atol=1e-5)
    sidecar = pq.read_table(data.parent / "ex" / "metadata.parquet").to_pylist()
    assert sidecar[4]["id"] == products[4].product_id
    assert sidecar[4]["category"] == products[4].category
    assert json.loads(sidecar[4]["attributes"]) == products[4].attributes
    assert sidecar[4]["title"] == products[4].title


def test_float16_matryoshka_prefix_is_renormalised(tiny_text_embedder, make_dataset):
    data = make_dataset(5)
    out = data.parent / "ex16"
    result = export_embeddings(tiny_text_embedder, data, "test", out, dtype="float16", matryoshka_dim=8,
                               show_progress=False)
    assert result.manifest.dim == 8 and result.manifest.full_dim == 32
    from safetensors.numpy import load_file
    stored = load_file(out / result.manifest.chunks[0])["vectors"]
    assert stored.dtype == np.float16 and stored.shape == (5, 8)
    full = tiny_text_embedder.encode_products(open_dataset(data).load_products("test"), show_progress=False)
    prefix = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(load_export(out).vectors, prefix, atol=2e-3)


def test_ranks_split_chunks_and_last_rank_finalises(tiny_text_embedder, make_dataset):
    data = make_dataset(20)
    out = data.parent / "ranked"
    first = export_embeddings(tiny_text_embedder, data, "test", out, chunk_size=4, rank=0, world_size=2,
                              show_progress=False)
    assert first.manifest is None and first.chunks_written == 3
    assert not (out / MANIFEST_FILE).exists()
    with pytest.raises(DataError, match="unfinished export"):
        load_export(out)
    second = export_embeddings(tiny_text_embedder, data, "test", out, chunk_size=4, rank=1, world_size=2,
                               show_progress=False)
    assert second.chunks_written == 2 and second.manifest is not None
    ids = load_export(out).ids
    assert ids == [p.product_id for p in open_dataset(data).load_products("test")]


def test_rank_from_torchrun_environment(tiny_text_embedder, make_dataset, monkeypatch):
    data = make_dataset(8)
    # An earlier in-process test may have initialised torch.distributed (world size 1),
    # which export rightly prefers; this test is about the launcher variables.
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = export_embeddings(tiny_text_embedder, data, "test", data.parent / "env", chunk_size=2,
                               show_progress=False)
    assert (result.rank, result.world_size, result.chunks_written) == (1, 2, 2)
    written = sorted(p.name for p in (data.parent / "env" / CHUNK_DIR).glob("vectors-*"))
    assert written == ["vectors-000001.safetensors", "vectors-000003.safetensors"]


def test_resume_refuses_a_different_run(tiny_text_embedder, make_dataset):
    data = make_dataset(6)
    out = data.parent / "ex"
    export_embeddings(tiny_text_embedder, data, "test", out, chunk_size=4, show_progress=False)
    with pytest.raises(DataError, match="dtype"):
        export_embeddings(tiny_text_embedder, data, "test", out, chunk_size=4, dtype="float16",
                          show_progress=False)


@pytest.mark.slow
def test_killed_export_resumes_without_losing_or_duplicating_ids(saved_tiny_embedder, make_dataset):
    """SIGKILL a real `moon export` process mid-run, then resume: every id exactly once."""
    data = make_dataset(480)
    out = data.parent / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "moon", "export", "--model", str(saved_tiny_embedder), "--data", str(data),
           "--out", str(out), "--chunk-size", "16", "--batch-size", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    chunk_dir = out / CHUNK_DIR
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if chunk_dir.is_dir() and len(list(chunk_dir.glob("vectors-*.safetensors"))) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    rc = proc.wait(timeout=30)
    assert rc == -signal.SIGKILL, f"export was not interrupted (rc={rc}): {proc.stderr.read().decode()[-2000:]}"
    done_before = len(list(chunk_dir.glob("vectors-*.safetensors")))
    assert 3 <= done_before < 30 and not (out / MANIFEST_FILE).exists()

    embedder = load_embedder(saved_tiny_embedder)
    result = export_embeddings(embedder, data, "test", out, chunk_size=16, show_progress=False)
    assert result.chunks_skipped == done_before and result.chunks_written == 30 - done_before
    exported = load_export(out)
    expected = [p.product_id for p in open_dataset(data).load_products("test")]
    assert len(exported.ids) == len(set(exported.ids)) == 480
    assert exported.ids == expected
    products = open_dataset(data).load_products("test")
    np.testing.assert_allclose(exported.vectors[::37], embedder.encode_products(products[::37], show_progress=False),
                               atol=1e-5)
