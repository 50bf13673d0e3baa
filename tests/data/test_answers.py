from __future__ import annotations

from moon.data.records import QueryKind, QueryRecord
from moon.data.answers import SharedAnswers, normalize_query_text
from tests.conftest import build_products, build_queries


def _text(qid: str, text: str, positive: str) -> QueryRecord:
    return QueryRecord(query_id=qid, kind=QueryKind.TEXT, text=text, positive_id=positive)


def test_query_texts_match_across_case_and_spacing():
    assert normalize_query_text("  Men  Navy Blue\tTshirts ") == "men navy blue tshirts"


def test_shared_texts_name_the_other_answers_only():
    image_query = next(q for q in build_queries(build_products(1, images_per_product=(1, 1), size=16))
                       if q.kind == QueryKind.IMAGE)
    queries = [_text("a", "men black tshirts", "p1"), _text("b", "Men Black  Tshirts", "p2"),
               _text("c", "men black tshirts", "p3"), _text("d", "women red dress", "p4"),
               image_query]
    answers = SharedAnswers(queries)
    assert answers.of(queries[0]) == ("p2", "p3")
    assert answers.of(queries[1]) == ("p1", "p3")
    assert answers.of(queries[3]) == ()
    assert answers.of(queries[4]) == ()
    assert answers.of(_text("new", "MEN BLACK TSHIRTS", "p9")) == ("p1", "p2", "p3")
    assert answers.summary() == {"shared_texts": 1, "products_per_shared_text": 3.0, "largest": 3}


def test_a_text_repeated_for_one_product_is_not_shared():
    answers = SharedAnswers([_text("a", "blue jeans", "p1"), _text("b", "blue jeans", "p1")])
    assert answers.of(_text("a", "blue jeans", "p1")) == ()
    assert answers.summary()["shared_texts"] == 0
