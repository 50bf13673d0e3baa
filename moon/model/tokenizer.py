"""Offline tokenizers: a small byte-level BPE trained on catalogue text, or a checkpoint's own.

Models built from scratch cannot download Qwen's 150k-token vocabulary, and would waste most
of their parameters on it; a few thousand BPE merges learned from the titles, category paths
and attribute strings of the training catalogue cover the domain. The special tokens are the
ones the Qwen2-VL family (and its HF processor) expects, so the same processor code serves
tiny models and real checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Union

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from moon.data.records import ProductRecord, QueryRecord

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD]


def corpus_from_products(products: Iterable[ProductRecord]) -> Iterator[str]:
    """The strings a tokenizer should learn: titles, category levels, attribute keys/values."""
    for p in products:
        yield p.title
        yield " > ".join(p.category)
        for key, value in p.attributes.items():
            yield f"{key}: {value}"


def corpus_from_queries(queries: Iterable[QueryRecord]) -> Iterator[str]:
    for q in queries:
        if q.text:
            yield q.text


def train_tokenizer(corpus: Iterable[str], vocab_size: int, lowercase: bool = False) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (no unknown tokens possible) with the Qwen2-VL special tokens.

    With `lowercase` the tokenizer folds case (NFKC, then lower case) before splitting, so
    "Navy Blue" and "navy blue" are the same tokens: a model trained from scratch then need not
    learn that from data, which matters when queries and catalogue texts differ in case (the
    fashion catalogue's t2p queries are lower case, its titles and labels are not). The
    normaliser is saved with the tokenizer, so encoding after a reload folds case too; special
    tokens are matched before normalisation and keep their spelling.
    """
    texts = [t for t in corpus if t and t.strip()]
    if not texts:
        raise ValueError("tokenizer corpus is empty: need product titles/categories/attributes")
    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    # Each corpus line is seen with and without a leading space: in prompts values follow
    # "Title:" etc. with a space, so " word" merges must exist as well as "word".
    tok.train_from_iterator((s for t in texts for s in (t, " " + t)), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD_TOKEN, eos_token=IM_END)


def load_tokenizer(path: Union[str, Path]) -> PreTrainedTokenizerFast:
    """A tokenizer saved next to a model or shipped in an HF checkpoint directory (offline)."""
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: no loadable tokenizer ({exc})") from exc
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{path}: tokenizer is not a fast (tokenizers-backed) tokenizer")
    missing = [t for t in SPECIAL_TOKENS[1:6] if tok.convert_tokens_to_ids(t) in (None, tok.unk_token_id)]
    if missing:
        raise ValueError(f"{path}: tokenizer lacks the Qwen2-VL special tokens {missing}")
    return tok
