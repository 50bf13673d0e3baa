import pytest

from moon.model.bootstrap import dataset_corpus, init_model
from moon.model.encoder import MoonModel

SMALL = {"backbone.text.num_layers": 1, "backbone.vision.depth": 1, "inputs.image_size": 56}


def test_corpus_comes_from_the_requested_splits(tiny_dataset):
    train = dataset_corpus(tiny_dataset)
    both = dataset_corpus(tiny_dataset, ["train", "test"])
    assert train and len(both) > len(train)
    assert any(" > " in t for t in train) and any(t.startswith("colour: ") for t in train)
    with pytest.raises(ValueError, match="nope"):
        dataset_corpus(tiny_dataset, ["nope"])


def test_init_model_saves_a_loadable_model(tiny_dataset, tmp_path):
    model = init_model("moon-tiny", tmp_path / "m", corpus=tiny_dataset, overrides=SMALL, seed=1)
    again = MoonModel.from_pretrained(tmp_path / "m")
    assert again.config == model.config and len(again.tokenizer) == len(model.tokenizer)
    with pytest.raises(ValueError, match="corpus"):
        init_model("moon-tiny", tmp_path / "x")
