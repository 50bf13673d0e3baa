"""Segment ids: which part of a product or query each token comes from.

The processor writes one id per token; the guided MoE routes by it (category tokens to
FFN_cate, attribute tokens to FFN_attr) and pooling/analysis can select by it. Kept in its
own module so the processor and the MoE agree on the numbering without importing each other.
"""

from __future__ import annotations

from enum import IntEnum


class Segment(IntEnum):
    """Token segment ids; PAD is 0 so `segment_ids != 0` equals the attention mask."""

    PAD = 0
    SPECIAL = 1
    """template and control tokens: chat markers, field labels, vision start/end"""
    IMAGE = 2
    CROP = 3
    TITLE = 4
    CATEGORY = 5
    ATTRIBUTE = 6
    QUERY = 7
