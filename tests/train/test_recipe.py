from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from moon.data.records import QueryKind
from moon.train import precision
from moon.train.recipe import RecipeError, check_model, load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_valid_recipe_with_typed_overrides(write_recipe):
    path = write_recipe()
    recipe = load_recipe(path, ["optim.lr=1e-4", "loss.matryoshka_dims=[8, 16]", "negatives.spatial=false",
                                "run.output_dir=/tmp/x"])
    assert recipe.optim.lr == pytest.approx(1e-4)
    assert recipe.loss.matryoshka_dims == [8, 16]
    assert recipe.negatives.spatial is False
    assert recipe.output_dir() == Path("/tmp/x")
    assert recipe.data.query_mix.of(QueryKind.IMAGE) == 1
    cleared = load_recipe(path, ["model.overrides={}", "model.overrides.max_images=2"])
    assert cleared.model.overrides == {"max_images": 2}
    nested = load_recipe(path, ["model.overrides={clip: {embed_dim: 16}}"])
    assert nested.model.overrides == {"clip.embed_dim": 16}


def test_default_query_mix_is_moons_12_3_2(train_dataset):
    from moon.train.recipe import parse_recipe

    recipe = parse_recipe({"name": "r", "model": {"name": "moon-tiny"}, "data": {"dataset": str(train_dataset)},
                           "optim": {"lr": 1e-3, "steps": 10, "batch_size": 4}})
    mix = recipe.data.query_mix
    assert (mix.image, mix.text, mix.product) == (12, 3, 2)


@pytest.mark.parametrize("override, expected", [
    ("optim.lr=fast", "recipe.yaml: optim.lr: Input should be a valid number"),
    ("optim.lrr=1", "recipe.yaml: optim.lrr: Extra inputs are not permitted"),
    ("negatives.hard_k=-1", "recipe.yaml: negatives.hard_k: Input should be greater than or equal to 0"),
    ("deepspeed.zero_stage=4", "recipe.yaml: deepspeed.zero_stage: Input should be less than or equal to 3"),
    ("deepspeed.precision=fp16", "recipe.yaml: deepspeed.precision: Input should be"),
    ("data.query_mix.video=1", "recipe.yaml: data.query_mix.video: Extra inputs are not permitted"),
    ("data.image_queries=sometimes", "recipe.yaml: data.image_queries: Input should be 'stored' or 'fresh'"),
    ("data.product_photos=jittered", "recipe.yaml: data.product_photos: Input should be 'stored' or 'augmented'"),
    ("data.product_photo_augment.share=0.5", "data.product_photo_augment is set but data.product_photos is 'stored'"),
    ("data.product_photo_augment.min_area=0", "recipe.yaml: data.product_photo_augment.min_area: Input should be "
                                              "greater than 0"),
    ("data.product_photo_augment.scope=queries",
     "recipe.yaml: data.product_photo_augment.scope: Input should be 'all' or 'products'"),
    ("loss.label_logit_adjust.type=1", "label_logit_adjust is set but label_weight is 0"),
    ("loss.label_inputs=[image,image]", "label_inputs repeats an input"),
    ("loss.label_distractors=8", "label_distractors is set but label_weight is 0"),
    ("loss.label_distractors=-1", "recipe.yaml: loss.label_distractors: Input should be greater than or equal to 0"),
    ("loss.intra_hard_negatives=true", "intra_hard_negatives is set but intra_product_weight is 0"),
    ("loss.intra_hard_images=true", "intra_hard_images is set but intra_product_weight is 0"),
    ("negatives.hard_query_kinds=[]", "hard_query_kinds is empty while hard_k > 0"),
    ("negatives.hard_query_kinds=[video]", "recipe.yaml: negatives.hard_query_kinds.0: Input should be"),
    ("loss.label_inputs=[photo]", "recipe.yaml: loss.label_inputs.0: Input should be 'image', 'title' or 'image_title'"),
])
def test_errors_name_the_key_path(write_recipe, override, expected):
    with pytest.raises(RecipeError) as err:
        load_recipe(write_recipe(), [override])
    assert expected in str(err.value)


@pytest.mark.parametrize("key", ["intra_hard_negatives", "intra_hard_images"])
def test_intra_hard_columns_need_mined_negatives(write_recipe, key):
    overrides = ["loss.intra_product_weight=1.0", f"loss.{key}=true"]
    assert getattr(load_recipe(write_recipe(), overrides).loss, key)
    with pytest.raises(RecipeError, match=f"loss.{key} is set but negatives.hard_k is 0"):
        load_recipe(write_recipe(), overrides + ["negatives.hard_k=0"])


def test_query_image_term_needs_a_share_for_the_kinds_it_scores(write_recipe):
    recipe = load_recipe(write_recipe(), ["loss.query_image_weight=0.5"])
    assert recipe.loss.query_image_weight == 0.5 and recipe.loss.query_image_kinds == [QueryKind.TEXT]
    with pytest.raises(RecipeError, match=r"data.query_mix gives no share to the kinds it scores "
                                          r"\(loss.query_image_kinds: text\)"):
        load_recipe(write_recipe(), ["loss.query_image_weight=0.5", "data.query_mix.text=0"])
    image_only = ["loss.query_image_weight=0.5", "loss.query_image_kinds=[image]", "data.query_mix.text=0"]
    assert load_recipe(write_recipe(), image_only).loss.query_image_kinds == [QueryKind.IMAGE]
    with pytest.raises(RecipeError, match="query_image_kinds: image"):
        load_recipe(write_recipe(), image_only + ["data.query_mix.image=0", "data.query_mix.text=1"])
    with pytest.raises(RecipeError, match="query_image_kinds repeats a kind"):
        load_recipe(write_recipe(), ["loss.query_image_kinds=[image,image]"])


def test_missing_paths_are_reported_before_anything_runs(write_recipe, tmp_path):
    path = write_recipe(data={"dataset": str(tmp_path / "nope"), "negatives": str(tmp_path / "neg.parquet")})
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert "recipe.yaml: data.dataset: directory does not exist" in msg
    assert "recipe.yaml: data.negatives: file does not exist" in msg


def test_model_needs_exactly_one_source(write_recipe, tmp_path):
    with pytest.raises(RecipeError, match="exactly one of model.name"):
        load_recipe(write_recipe(), [f"model.dir={tmp_path}"])


def test_yaml_and_override_syntax_errors(tmp_path, write_recipe):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="bad.yaml: not valid YAML"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="must look like key.path=value"):
        load_recipe(write_recipe(), ["optim.lr"])
    with pytest.raises(RecipeError, match="'optim.lr' is not a section"):
        load_recipe(write_recipe(), ["optim.lr.x=1"])


def test_deepspeed_config_follows_the_recipe(write_recipe, tmp_path):
    extra = tmp_path / "zero.json"
    extra.write_text(json.dumps({"zero_optimization": {"reduce_bucket_size": 1000}}))
    recipe = load_recipe(write_recipe(), ["optim.grad_accum=3", "optim.grad_clip=0.5", "deepspeed.zero_stage=2",
                                          "deepspeed.precision=bf16", f"deepspeed.config_file={extra}"])
    cfg = recipe.deepspeed_config(world_size=4)
    assert cfg["train_batch_size"] == 6 * 3 * 4
    assert cfg["gradient_accumulation_steps"] == 3
    assert cfg["gradient_clipping"] == 0.5
    assert cfg["zero_optimization"] == {"stage": 2, "reduce_bucket_size": 1000}
    assert cfg["bf16"]["enabled"] and not cfg["torch_autocast"]["enabled"]
    assert cfg["scheduler"]["type"] == "WarmupCosineLR"
    assert cfg["optimizer"]["params"]["torch_adam"] is True


@pytest.mark.parametrize("native, autocast", [(True, True), (False, False)])
def test_auto_precision_autocasts_only_on_cpus_with_native_bf16(write_recipe, monkeypatch, native, autocast):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    cfg = load_recipe(write_recipe(), ["deepspeed.precision=auto"]).deepspeed_config(world_size=1)
    assert cfg["torch_autocast"]["enabled"] is autocast and not cfg["bf16"]["enabled"]


def test_deepspeed_file_may_not_override_recipe_keys(write_recipe, tmp_path):
    extra = tmp_path / "ds.json"
    extra.write_text(json.dumps({"train_batch_size": 999}))
    with pytest.raises(RecipeError, match=r"deepspeed.config_file: .* sets \['train_batch_size'\]"):
        load_recipe(write_recipe(), [f"deepspeed.config_file={extra}"])


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path):
    recipe = load_recipe(path, check_paths=False)
    assert recipe.name == path.stem
    problems = check_model(recipe, path.name)  # model overrides resolve; only weights may be absent here
    assert all("backbone.checkpoint" in p for p in problems), problems
    cfg = recipe.deepspeed_config(world_size=8, use_cuda=True)
    assert cfg["train_micro_batch_size_per_gpu"] == recipe.optim.batch_size


def test_ablations_inherit_from_their_base_and_change_one_thing():
    base = load_recipe(RECIPES / "moon-qwen2.5vl-3b.yaml", check_paths=False)
    no_moe = load_recipe(RECIPES / "moon-qwen2.5vl-3b-no-moe.yaml", check_paths=False)
    assert no_moe.model.overrides == {**base.model.overrides, "moe.mode": "off"}
    assert no_moe.optim == base.optim and no_moe.negatives == base.negatives
    only = load_recipe(RECIPES / "moon-qwen2.5vl-3b-inbatch-only.yaml", check_paths=False)
    assert (only.negatives.hard_k, only.negatives.spatial, only.negatives.queue_size) == (0, False, 0)
    assert only.loss == base.loss


def test_model_overrides_are_checked_before_training(write_recipe):
    with pytest.raises(RecipeError, match=r"recipe.yaml: model: .*vision_cfg: unknown open_clip keys \['depth'\]"):
        load_recipe(write_recipe(), ["model.overrides.clip.vision_cfg.depth=3"])


def test_base_cycles_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nname: b\n")
    with pytest.raises(RecipeError, match="makes a cycle"):
        load_recipe(tmp_path / "a.yaml")


@pytest.mark.parametrize("path", sorted((RECIPES / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_shipped_deepspeed_files_only_tune_zero(path):
    data = json.loads(path.read_text())
    assert set(data) <= {"zero_optimization", "communication_data_type", "zero_allow_untested_optimizer"}
    assert yaml.safe_load(path.read_text()) == data
