import pytest

from moon.model.tokenizer import (
    IMAGE_PAD,
    SPECIAL_TOKENS,
    corpus_from_products,
    load_tokenizer,
    train_tokenizer,
)


def test_trained_tokenizer_roundtrip(tmp_path, products):
    corpus = list(corpus_from_products(products))
    assert any(" > " in line for line in corpus) and any(": " in line for line in corpus)
    tok = train_tokenizer(corpus, vocab_size=500)
    ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    text = f"<|im_start|>{IMAGE_PAD}{IMAGE_PAD}Title: {products[0].title}<|im_end|>"
    enc = tok(text, add_special_tokens=False)["input_ids"]
    assert enc.count(tok.convert_tokens_to_ids(IMAGE_PAD)) == 2
    assert tok.decode(enc) == text
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again(text, add_special_tokens=False)["input_ids"] == enc


def test_empty_corpus_and_missing_tokenizer(tmp_path):
    with pytest.raises(ValueError, match="corpus is empty"):
        train_tokenizer(["  ", ""], vocab_size=500)
    with pytest.raises(ValueError, match="no loadable tokenizer"):
        load_tokenizer(tmp_path)


def test_lowercase_tokenizer_folds_case_but_keeps_special_tokens(tmp_path, products):
    corpus = list(corpus_from_products(products))
    tok = train_tokenizer(corpus, vocab_size=500, lowercase=True)
    title = products[0].title.title()   # fixture titles are lower case; "Brand0 Red Square Mug"
    assert title != title.lower()
    text = f"<|im_start|>{IMAGE_PAD}Title: {title}<|im_end|>"
    enc = tok(text, add_special_tokens=False)["input_ids"]
    assert enc == tok(f"<|im_start|>{IMAGE_PAD}TITLE: {title.upper()}<|im_end|>", add_special_tokens=False)["input_ids"]
    assert enc[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert enc.count(tok.convert_tokens_to_ids(IMAGE_PAD)) == 1
    tok.save_pretrained(tmp_path)
    assert load_tokenizer(tmp_path)(title, add_special_tokens=False)["input_ids"] == \
        tok(title.lower(), add_special_tokens=False)["input_ids"]
    cased = train_tokenizer(corpus, vocab_size=500)
    assert cased(title, add_special_tokens=False)["input_ids"] != cased(title.lower(), add_special_tokens=False)["input_ids"]
