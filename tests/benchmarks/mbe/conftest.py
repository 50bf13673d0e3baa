"""Fixtures for benchmark tests: the tiny real text embedder and a small fashion-layout folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.index.conftest import saved_tiny_embedder, single_thread_faiss, tiny_text_embedder  # noqa: F401

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
TYPES = [("Apparel", "Topwear", "Tshirts"), ("Footwear", "Shoes", "Casual Shoes"),
         ("Accessories", "Bags", "Handbags")]
COLOURS = {"Red": (200, 30, 30), "Blue": (40, 60, 200), "Black": (20, 20, 20)}
GENDERS = ["Men", "Women"]


def write_catalogue(root: Path, n: int = 36, seed: int = 0) -> Path:
    """A folder of the fashion-catalogue layout with n good rows, one row without image and
    one product without a usage value. Ids start at 5000 so they differ from the real ones."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    lines = [HEADER]
    colours = list(COLOURS)
    for i in range(n):
        pid = 5000 + i
        master, sub, article = TYPES[i % 3]
        colour, gender = colours[(i // 3) % 3], GENDERS[(i // 9) % 2]
        usage = "" if i == 4 else "Casual"
        lines.append(f'{pid},{gender},{master},{sub},{article},{colour},Summer,2012,{usage},'
                     f'"Brand{i % 4} {gender} {colour} {article}"')
        img = Image.fromarray(rng.integers(200, 255, (64, 64, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(img)
        x = int(rng.integers(4, 24))
        shape = [x, x, x + 30, x + 30]
        (draw.ellipse if i % 3 == 1 else draw.rectangle)(shape, fill=COLOURS[colour])
        img.save(root / "images" / f"{pid}.jpg", "JPEG", quality=90)
    lines.append("9999,Men,Apparel,Topwear,Tshirts,Red,Summer,2012,Casual,No Image Here")
    (root / "styles.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def mini_catalogue(tmp_path: Path) -> Path:
    return write_catalogue(tmp_path / "catalogue")
