from __future__ import annotations

from collections import Counter

from moon.data.synth import SynthConfig
from moon.data.synth.plan import plan_catalogue
from moon.data.synth.queries import plan_queries


def test_plan_is_deterministic_and_exact_size():
    config = SynthConfig(products=300, seed=11)
    a, b = plan_catalogue(config), plan_catalogue(config)
    assert [(p.product_id, p.title, p.look) for p in a] == [(p.product_id, p.title, p.look) for p in b]
    assert len(a) == 300


def test_split_sizes_follow_fractions_and_combinations_stay_in_one_split():
    plans = plan_catalogue(SynthConfig(products=1000, seed=2, variant_fraction=0.0))
    sizes = Counter(p.split for p in plans)
    assert abs(sizes["test"] - 100) <= 15 and abs(sizes["val"] - 100) <= 15
    combo_split: dict = {}
    for p in plans:
        key = (p.leaf, tuple(sorted(p.attributes.items())))
        assert combo_split.setdefault(key, p.split) == p.split
    shared = Counter((p.leaf, tuple(sorted(p.attributes.items()))) for p in plans)
    assert len(plans) / len(shared) > 2.0


def test_query_mix_and_eval_coverage():
    config = SynthConfig(products=400, seed=4)
    plans = plan_catalogue(config)
    queries = plan_queries(config, plans)
    train = Counter(q.kind.value for q in queries if q.split == "train")
    n_train = sum(1 for p in plans if p.split == "train")
    assert sum(train.values()) == 2 * n_train
    assert train["image"] > train["text"] > train["product"] * 0.8
    n_test = sum(1 for p in plans if p.split == "test")
    assert Counter(q.kind.value for q in queries if q.split == "test") == {"text": n_test, "image": n_test,
                                                                          "product": n_test}
    assert len({q.query_id for q in queries}) == len(queries)
