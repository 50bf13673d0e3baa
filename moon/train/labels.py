"""Label alignment: a product's image and its title are each pulled toward its own label texts.

Why: zero-shot classification and attribute prediction (MBE cls/attr, the fashion tasks)
embed bare label strings ("Tshirts", "Men", "Navy Blue") as text queries and take the
nearest one to the product embedded from image + title. No retrieval query looks like a
bare label, so contrastive training alone does not teach that mapping; on the fashion
catalogue it even unlearned it (the untrained moon-tiny matched the title's gender word
for gender accuracy 0.91; every trained model fell to 0.51-0.57, below the majority
class). This term trains the zero-shot protocol on the train split's labels.

By default it scores the image-only and title-only embeddings the intra-product term already
computes (about 3% of a step: label texts are short). `loss.label_inputs` can add the image +
title embedding, the benchmarks' actual input, at the price of one more forward pass of the
positives (21% of a fashion-recipe step). Why one would pay it: mean pooling mixes the two
modalities, and a mix trained only through its parts need not land near the label. On the
fashion catalogue a moon-tiny (no-MoE ablation, seed 0) trained on the parts scored articleType
macro-F1 0.82 from its title alone, 0.40 from its image alone, and 0.66 from image + title.
Adding the image + title input (925 steps for the same wall clock) raised articleType accuracy
(0.911 / 0.907 vs 0.889 / 0.880, seeds 0 / 1) but not macro-F1, so the recipe does not set it.

Per field (a category level or an attribute), the loss is a softmax over candidate label
texts *of that field only*, so a product never has a false negative: two labels of one
field are different values by construction, and values of other fields ("Men" the gender,
"Topwear" the sub-category) are never competitors. Each step embeds a fixed number of
label texts per field (every label when the field has at most `per_field`, else the
batch's own labels plus a seeded sample of the others), so every rank and every step runs
the same shapes, and a resumed run draws the same labels.

Long tails: zero-shot classification is scored by macro-F1, where a type with 12 training
products counts as much as one with 1,000, and a plain softmax learns the label prior. Logit
adjustment (Menon et al., "Long-tail learning via logit adjustment") adds `tau * log(prior)`
of each candidate to its logit during training only, so the similarities the benchmark ranks
by are the prior-free ones; `loss.label_logit_adjust` sets tau per field (0 = plain softmax).
Measured on the fashion catalogue (tau 1 on the three category levels, seed 0) it
over-corrected: articleType macro-F1 fell from 0.703 to 0.641 and accuracy from 0.889 to
0.793 (the rarest types gained, the mid-sized lost), so no shipped recipe sets it.

Unseen labels: a zero-shot label set may hold values no training product has (the fashion
test split has "Nude" and "Sarees", one product each). Trained only against the known values,
a model never learns that an unfamiliar text is *not* a product's label, and such texts become
hubs: on the fashion catalogue "Nude" took 132 of the 209 wrong baseColour predictions of one
model, and made-up words ("Xyz", "Tarsel") added as candidates took more than half of all
predictions. `loss.label_distractors` appends that many made-up words to every field's
candidates each step (`PseudoWords`: letter sequences drawn from the known values' own letter
pairs, never equal to a known value), so the products learn to sit closer to their own label
than to text that merely looks like one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moon.data.records import DataError, ProductRecord, QueryKind, QueryRecord
from moon.train.loss import Temperature


@dataclass(frozen=True)
class LabelField:
    """One labelled field: where its value lives in a product, and its values in the train split."""

    name: str
    level: Optional[int]
    """Category level index, or None for an attribute named `name`."""
    values: tuple[str, ...]
    counts: tuple[int, ...] = ()
    """Training products holding each value (aligned with `values`)."""

    def value_of(self, product: ProductRecord) -> Optional[str]:
        if self.level is not None:
            return product.category[self.level] if self.level < len(product.category) else None
        return product.attributes.get(self.name) or None


def label_fields(products: Sequence[ProductRecord], category_levels: Sequence[str], attribute_names: Sequence[str],
                 wanted: Optional[Sequence[str]] = None) -> list[LabelField]:
    """The fields named in `wanted` (default: every category level and attribute), with their values.

    Raises DataError naming an unknown field and the dataset's fields."""
    known = list(category_levels) + [a for a in attribute_names if a not in category_levels]
    names = list(wanted) if wanted is not None else known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DataError(f"loss.label_fields: unknown field(s) {', '.join(unknown)}; the dataset has category "
                        f"levels {list(category_levels)} and attributes {list(attribute_names)}")
    fields = []
    for name in names:
        level = list(category_levels).index(name) if name in category_levels else None
        probe = LabelField(name, level, ())
        counts = Counter(v for p in products if (v := probe.value_of(p)) is not None)
        if len(counts) >= 2:
            values = tuple(sorted(counts))
            fields.append(LabelField(name, level, values, tuple(counts[v] for v in values)))
    if not fields:
        raise DataError(f"loss.label_weight > 0 but none of the fields {names} has two or more values in the "
                        "training products: nothing to align")
    return fields


@dataclass
class LabelBatch:
    """The label texts of one micro-batch and which of them each positive must pick.

    texts[sum(per_field[:f]) + j] is candidate j of field f; targets[f, b] is the index (into
    texts) of positive b's value of field f, or -1 when it has none; offsets[i] is added to
    text i's logit (tau * log prior, zero without logit adjustment). The last `distractors`
    texts are made-up words, candidates (never targets) of every field.
    """

    texts: list[str]
    targets: torch.Tensor
    per_field: list[int]
    offsets: Optional[torch.Tensor] = None
    distractors: int = 0

    def queries(self) -> list[QueryRecord]:
        """The label texts as text queries, embedded exactly like the benchmark's label texts."""
        return [QueryRecord(query_id=f"label-{i}", kind=QueryKind.TEXT, text=t, positive_id="-")
                for i, t in enumerate(self.texts)]


class PseudoWords:
    """Made-up words that look like label values: letter chains drawn from the letter pairs of
    the known values (so "Nude"-like, not "Qxzv"-like), one or two words, title-cased like the
    values, and never equal (case-folded) to a known value."""

    START, END = "^", "$"
    MAX_TRIES = 1000
    """Draws per word before giving up: values with too few letter pairs must fail, not hang."""

    def __init__(self, values: Sequence[str], min_len: int = 3, max_len: int = 10) -> None:
        words = [w for v in values for w in v.lower().split() if w.isalpha()]
        if not words:
            raise ValueError("PseudoWords needs label values with at least one alphabetic word")
        pairs: dict[str, Counter] = {}
        for w in words:
            chain = self.START + w + self.END
            for a, b in zip(chain, chain[1:]):
                pairs.setdefault(a, Counter())[b] += 1
        self.next = {a: (list(c), np.array(list(c.values()), dtype=float) / sum(c.values())) for a, c in pairs.items()}
        self.known = {v.casefold() for v in values}
        self.min_len, self.max_len = min_len, max_len

    def _word(self, rng: np.random.Generator) -> str:
        for _ in range(self.MAX_TRIES):
            out, prev = [], self.START
            while len(out) <= self.max_len:
                letters, probs = self.next[prev]
                prev = letters[int(rng.choice(len(letters), p=probs))]
                if prev == self.END:
                    break
                out.append(prev)
            if self.min_len <= len(out) <= self.max_len:
                return "".join(out).capitalize()
        raise ValueError(f"the label values' letter pairs make no word of {self.min_len}-{self.max_len} letters")

    def sample(self, rng: np.random.Generator, n: int) -> list[str]:
        """n distinct made-up words (about one in four of two words)."""
        chosen: list[str] = []
        for _ in range(self.MAX_TRIES * max(n, 1)):
            if len(chosen) == n:
                return chosen
            text = " ".join(self._word(rng) for _ in range(2 if rng.random() < 0.25 else 1))
            if text.casefold() not in self.known and text not in chosen:
                chosen.append(text)
        if len(chosen) == n:
            return chosen
        raise ValueError(f"loss.label_distractors: only {len(chosen)} distinct made-up words (of {n}) could be drawn "
                         "from the label values' letters; lower label_distractors")


class LabelSampler:
    """Candidate label texts per field for a micro-batch, a pure function of (seed, step, rank)."""

    def __init__(self, fields: Sequence[LabelField], per_field: int, seed: int, rank: int = 0,
                 logit_adjust: Optional[Mapping[str, float]] = None, distractors: int = 0) -> None:
        if per_field < 2:
            raise ValueError(f"loss.label_candidates must be at least 2, got {per_field}")
        if distractors < 0:
            raise ValueError(f"loss.label_distractors must be >= 0, got {distractors}")
        self.fields, self.seed, self.rank = list(fields), seed, rank
        self.distractors = distractors
        self.pseudo_words = PseudoWords([v for f in self.fields for v in f.values]) if distractors else None
        self.sizes = [min(len(f.values), per_field) for f in self.fields]
        adjust = dict(logit_adjust or {})
        unknown = sorted(set(adjust) - {f.name for f in self.fields})
        if unknown:
            raise DataError(f"loss.label_logit_adjust: field(s) {', '.join(unknown)} are not aligned; the label "
                            f"fields are {[f.name for f in self.fields]}")
        self.log_priors = {f.name: {v: adjust[f.name] * float(np.log(n / sum(f.counts)))
                                    for v, n in zip(f.values, f.counts)}
                           for f in self.fields if adjust.get(f.name, 0.0) != 0.0}
        """Per adjusted field, each value's tau * log(prior): the offset added to its logit."""

    def batch(self, positives: Sequence[ProductRecord], step: int) -> LabelBatch:
        rng = np.random.default_rng([self.seed, 3, step, self.rank])
        texts: list[str] = []
        offsets: list[float] = []
        targets = torch.full((len(self.fields), len(positives)), -1, dtype=torch.long)
        for f, (field, size) in enumerate(zip(self.fields, self.sizes)):
            own = [field.value_of(p) for p in positives]
            if size == len(field.values):
                chosen = list(field.values)
            else:
                present = list(dict.fromkeys(v for v in own if v is not None and v in field.values))
                rng.shuffle(present)
                present = present[:size]
                taken = set(present)
                others = [v for v in field.values if v not in taken]
                fill = rng.choice(len(others), size=size - len(present), replace=False)
                chosen = present + [others[int(i)] for i in fill]
            offset = len(texts)
            where = {v: offset + j for j, v in enumerate(chosen)}
            texts += chosen
            log_prior = self.log_priors.get(field.name, {})
            offsets += [log_prior.get(v, 0.0) for v in chosen]
            for b, value in enumerate(own):
                targets[f, b] = where.get(value, -1)
        if self.pseudo_words is not None:
            texts += self.pseudo_words.sample(rng, self.distractors)
            offsets += [0.0] * self.distractors
        return LabelBatch(texts=texts, targets=targets, per_field=list(self.sizes),
                          offsets=torch.tensor(offsets, dtype=torch.float32) if self.log_priors else None,
                          distractors=self.distractors)


class LabelAlignmentLoss(nn.Module):
    """Mean over fields of the cross-entropy of each product over its field's label texts and
    the batch's distractors (logits shifted by the batch's offsets when logit adjustment is on)."""

    def __init__(self, temperature: Temperature) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, products: torch.Tensor, labels: torch.Tensor, batch: LabelBatch) -> torch.Tensor:
        logits = self.temperature() * (products.float() @ labels.float().T)
        if batch.offsets is not None:
            logits = logits + batch.offsets.to(logits.device)
        targets = batch.targets.to(products.device)
        shared = logits[:, logits.shape[1] - batch.distractors:]
        losses = []
        start = 0
        for f, size in enumerate(batch.per_field):
            field_logits = torch.cat([logits[:, start:start + size], shared], dim=1)
            has = targets[f] >= 0
            if bool(has.any()):
                losses.append(F.cross_entropy(field_logits[has], targets[f][has] - start))
            start += size
        if not losses:  # no positive has a value of any field: zero, still part of the graph
            return 0.0 * logits.sum()
        return torch.stack(losses).mean()
