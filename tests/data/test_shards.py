import io
import json
import multiprocessing as mp
import os
import signal
import tarfile
import time
from pathlib import Path

import pytest
import torch
import webdataset as wds

from moon.data.records import DataError
from moon.data.shards import MANIFEST, DatasetWriter, iter_tar_samples, open_dataset
from tests.conftest import build_products, build_queries


def test_round_trip_preserves_records(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    assert ds.splits == ["test", "train", "val"]
    assert ds.count("train") == 12 and ds.count("train", "queries") == 36
    assert ds.load_products("train") == build_products(12, seed=1)
    assert ds.load_queries("val") == build_queries(build_products(6, seed=2), seed=2)


def test_manifest_checksums_and_counts(tiny_dataset):
    manifest = json.loads((tiny_dataset / MANIFEST).read_text())
    train = manifest["tables"]["train/products"]
    assert [s["count"] for s in train["shards"]] == [5, 5, 2]
    assert sum(s["count"] for s in train["shards"]) == train["count"]
    import hashlib
    for s in train["shards"]:
        assert hashlib.sha256((tiny_dataset / s["name"]).read_bytes()).hexdigest() == s["sha256"]


def test_stock_webdataset_reads_same_samples(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    urls = [str(p) for p in ds.shard_paths("train")]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    ours = ds.load_products("train")
    assert len(samples) == len(ours)
    for sample, record in zip(samples, ours):
        assert sample["json"]["product_id"] == record.product_id
        assert sample["json"]["title"] == record.title
        for i, image in enumerate(record.images):
            pil = sample[f"img{i}.{image.format}"]
            assert pil.size == image.to_pil().size
            assert list(pil.convert("RGB").getdata()) == list(image.to_pil().getdata())


def test_rank_and_worker_sharding_cover_each_sample_once(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    by_rank = [[p.product_id for p in ds.products("train", rank=r, world_size=2)] for r in range(2)]
    assert not set(by_rank[0]) & set(by_rank[1])
    assert sorted(by_rank[0] + by_rank[1]) == sorted(p.product_id for p in ds.load_products("train"))

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return (p.product_id for p in ds.products("train"))

    loader = torch.utils.data.DataLoader(Stream(), batch_size=None, num_workers=2)
    assert sorted(loader) == sorted(by_rank[0] + by_rank[1])


def _corrupt_first_image(shard: Path) -> None:
    samples = list(iter_tar_samples(shard))
    with tarfile.open(shard, "w") as tar:
        for n, (key, members) in enumerate(samples):
            for suffix, data in members.items():
                if n == 1 and suffix.startswith("img0"):
                    data = b"not an image at all"
                if n == 2 and suffix == "json":
                    meta = json.loads(data)
                    del meta["title"]
                    data = json.dumps(meta).encode()
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_bad_samples_raise_with_location_or_are_skipped_and_counted(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    _corrupt_first_image(ds.shard_paths("train")[0])
    with pytest.raises(DataError, match=r"train/products-00000.tar:000000002: field 'title'"):
        ds.load_products("train")
    kept = ds.load_products("train", on_error="skip")
    assert len(kept) == 11  # the missing title is skipped; the corrupt JPEG decodes lazily
    assert ds.skipped == {"train/products": 1}
    with pytest.raises(DataError, match="not a readable JPG"):
        kept[1].images[0].to_pil()


def test_not_a_dataset_and_missing_table_are_clear(tmp_path, tiny_dataset):
    with pytest.raises(DataError, match="not a moon dataset"):
        open_dataset(tmp_path)
    with pytest.raises(DataError, match="no 'nosplit/products'"):
        next(open_dataset(tiny_dataset).products("nosplit"))


def test_writer_refuses_existing_dataset(tiny_dataset):
    with pytest.raises(DataError, match="already holds a dataset"):
        DatasetWriter(tiny_dataset, name="x", category_levels=["a"], attribute_names=[])


def _slow_writer(out: str) -> None:
    writer = DatasetWriter(out, name="killed", category_levels=["a", "b", "c"],
                           attribute_names=["colour"], shard_size=4)
    products = build_products(40, seed=5)
    for i, p in enumerate(products):
        writer.add_product("train", p)
        if i == 9:
            Path(out, "ready").write_text("1")
        time.sleep(0.05)
    writer.close()


def test_killed_writer_leaves_only_complete_shards_in_manifest(tmp_path):
    out = tmp_path / "killed"
    proc = mp.get_context("spawn").Process(target=_slow_writer, args=(str(out),))
    proc.start()
    while not (out / "ready").exists():
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    ds = open_dataset(out)
    records = ds.load_products("train")
    assert len(records) == ds.count("train") and len(records) % 4 == 0 and len(records) >= 8
    assert records == build_products(40, seed=5)[: len(records)]
