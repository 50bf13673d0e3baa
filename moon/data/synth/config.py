"""SynthConfig: every knob of MBE-synth in one validated model.

The config (minus `workers`, which never changes the output) is stored in the dataset
manifest, so a dataset says how to regenerate it byte for byte.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from moon.data.records import QueryKind


class SynthConfig(BaseModel):
    """Sizes, seed and the statistics of the generated catalogue and behaviour log."""

    model_config = ConfigDict(extra="forbid")

    products: int = Field(2000, ge=10, description="number of products over all splits")
    seed: int = Field(0, description="the only source of randomness: same seed, same bytes")
    workers: int = Field(2, ge=1, le=64, description="rendering processes; does not change the output")
    image_size: int = Field(128, ge=64, le=512, description="square image side in pixels")
    images_per_product: tuple[int, int] = Field((2, 4), description="inclusive range of catalogue views")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    variant_fraction: float = Field(0.3, ge=0.0, le=1.0,
                                    description="share of groups that have several variants (same group_id)")
    max_variants: int = Field(3, ge=2, le=6, description="largest variant group")
    groups_per_combo: float = Field(4.0, ge=1.0, description=(
        "mean number of groups sharing one (type, colour, pattern, material, fit) combination: "
        "what makes attributes alone ambiguous"))
    products_per_brand: float = Field(4.0, ge=1.0, description="catalogue size / number of brand tokens")
    train_queries_per_product: int = Field(2, ge=0, le=20)
    query_mix: dict[QueryKind, float] = Field(
        default_factory=lambda: {QueryKind.IMAGE: 12.0, QueryKind.TEXT: 3.0, QueryKind.PRODUCT: 2.0},
        description="relative frequency of query kinds in train (MOON's 12:3:2)")
    eval_queries_per_kind: int = Field(1, ge=0, le=10, description="val/test queries of each kind per product")
    session_size: tuple[int, int] = Field((2, 5), description="inclusive range of queries per session")
    days: float = Field(30.0, gt=0.0, description="time span of the behaviour log")
    jpeg_quality: int = Field(90, ge=30, le=100, description="catalogue images (user photos use less)")
    shard_size: int = Field(256, ge=1)
    name: str = Field("mbe-synth", min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "SynthConfig":
        lo, hi = self.images_per_product
        if not 1 <= lo <= hi <= 8:
            raise ValueError(f"images_per_product must satisfy 1 <= min <= max <= 8, got {self.images_per_product}")
        s_lo, s_hi = self.session_size
        if not 1 <= s_lo <= s_hi:
            raise ValueError(f"session_size must satisfy 1 <= min <= max, got {self.session_size}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must leave products for train (< 1)")
        if any(w < 0 for w in self.query_mix.values()) or sum(self.query_mix.values()) <= 0:
            raise ValueError("query_mix weights must be >= 0 with a positive sum")
        return self
