"""Text tokenizers for the open_clip baseline, both usable offline.

Two choices, because they trade size for convenience:
- "openai-bpe": open_clip's SimpleTokenizer. Its BPE merges ship inside the open_clip
  package (bpe_simple_vocab_16e6.txt.gz), so nothing is downloaded; 49,408 tokens, which
  makes the token embedding the biggest tensor of a tiny model.
- "local-bpe": a byte-level BPE trained with `tokenizers` on the training texts, with a
  vocabulary of the configured size; it keeps the baseline's parameter count close to a
  tiny MOON model, which matters for an equal-size comparison.

Both return [N, context_length] int64 ids: start token, text tokens, end token, then pad.
The end token's position is where the text tower pools (open_clip's 'argmax' pooling for
the OpenAI vocabulary, whose end token has the largest id; 'eos' pooling for local BPE).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Literal, Protocol, Sequence

import torch

TokenizerKind = Literal["openai-bpe", "local-bpe"]
LOCAL_TOKENIZER_FILE = "tokenizer.json"
PAD, SOS, EOS, UNK = "<pad>", "<sot>", "<eot>", "<unk>"


class ClipTokenizer(Protocol):
    kind: TokenizerKind
    vocab_size: int
    pad_id: int
    eos_id: int

    def __call__(self, texts: Sequence[str], context_length: int) -> torch.Tensor:
        ...

    def save(self, directory: Path) -> None:
        ...


class OpenAIBpeTokenizer:
    """open_clip's own tokenizer; vocabulary read from the installed package."""

    kind: TokenizerKind = "openai-bpe"

    def __init__(self) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        self._tok = SimpleTokenizer()
        self.vocab_size = self._tok.vocab_size
        self.pad_id = 0
        self.eos_id = self._tok.eot_token_id

    def __call__(self, texts: Sequence[str], context_length: int) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, context_length, dtype=torch.long)
        return self._tok(list(texts), context_length=context_length)

    def save(self, directory: Path) -> None:
        """Nothing to write: the vocabulary is part of the open_clip package."""


class LocalBpeTokenizer:
    """A byte-level BPE trained on the catalogue's own texts."""

    kind: TokenizerKind = "local-bpe"

    def __init__(self, tokenizer) -> None:
        self._tok = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self.pad_id = tokenizer.token_to_id(PAD)
        self.sos_id = tokenizer.token_to_id(SOS)
        self.eos_id = tokenizer.token_to_id(EOS)

    @classmethod
    def train(cls, corpus: Iterable[str], vocab_size: int) -> "LocalBpeTokenizer":
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE(unk_token=UNK))
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, SOS, EOS, UNK],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        texts = [t for t in corpus if t and t.strip()]
        if not texts:
            raise ValueError("local-bpe tokenizer needs a non-empty text corpus to train on")
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, directory: Path) -> "LocalBpeTokenizer":
        from tokenizers import Tokenizer

        path = Path(directory) / LOCAL_TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing tokenizer file of a local-bpe open_clip model")
        return cls(Tokenizer.from_file(str(path)))

    def __call__(self, texts: Sequence[str], context_length: int) -> torch.Tensor:
        out = torch.full((len(texts), context_length), self.pad_id, dtype=torch.long)
        if not texts:
            return out
        for row, enc in enumerate(self._tok.encode_batch(list(texts), add_special_tokens=False)):
            ids = [self.sos_id, *enc.ids[:context_length - 2], self.eos_id]
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def save(self, directory: Path) -> None:
        path = Path(directory) / LOCAL_TOKENIZER_FILE
        tmp = path.with_name(path.name + ".tmp")
        self._tok.save(str(tmp))
        os.replace(tmp, path)
