import PIL.Image
import pytest
from PIL import Image
from pydantic import ValidationError

from moon.data.records import (
    IMAGE_VIEW,
    Box,
    BoxRole,
    DataError,
    ProductImage,
    ProductRecord,
    ProductView,
    QueryKind,
    QueryRecord,
    decode_image,
    format_validation_error,
)


def _image():
    return ProductImage.from_pil(Image.new("RGB", (8, 8), (255, 0, 0)))


def test_product_requires_images_title_and_category():
    with pytest.raises(ValidationError) as err:
        ProductRecord(product_id="1", group_id="1", images=[], title="  ", category=[])
    fields = {e["loc"][0] for e in err.value.errors()}
    assert fields == {"images", "title", "category"}


def test_unknown_fields_are_rejected_by_name():
    with pytest.raises(ValidationError) as err:
        ProductRecord(product_id="1", group_id="1", images=[_image()], title="t", category=["a"], colour="red")
    assert "field 'colour'" in format_validation_error(err.value, "shard:0001")


def test_box_must_be_ordered_and_knows_its_area():
    with pytest.raises(ValidationError, match="x1>x0"):
        Box(x0=5, y0=0, x1=4, y1=3, source="t")
    assert Box(x0=0, y0=0, x1=4, y1=3, source="t").area == 12


def test_image_picks_most_confident_box_of_a_role():
    im = _image()
    im.boxes = [Box(x0=0, y0=0, x1=2, y1=2, source="a", confidence=0.3),
                Box(x0=0, y0=0, x1=4, y1=4, source="b", confidence=0.9),
                Box(x0=0, y0=0, x1=8, y1=8, source="synth", role=BoxRole.TRUTH)]
    assert im.box(BoxRole.CORE).source == "b"
    assert im.box(BoxRole.TRUTH).source == "synth"


def test_corrupt_image_raises_data_error():
    with pytest.raises(DataError, match="not a readable JPG"):
        ProductImage(data=b"garbage").to_pil()


def test_corrupt_image_is_a_data_error_when_pil_open_is_patched_to_import_a_plugin(monkeypatch):
    """ultralytics patches Image.open to import an optional HEIF plugin on unknown bytes;
    a missing plugin must still surface as DataError, not ModuleNotFoundError."""
    def patched_open(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'pi_heif'")

    monkeypatch.setattr(PIL.Image, "open", patched_open)
    with pytest.raises(DataError, match="ModuleNotFoundError"):
        decode_image(b"garbage")


def test_corrupt_image_is_a_data_error_after_ultralytics_is_imported():
    import ultralytics  # noqa: F401  (its import patches PIL.Image.open)

    with pytest.raises(DataError, match="not a readable PNG"):
        ProductImage(data=b"\x89PNG garbage", format="png").to_pil()


@pytest.mark.parametrize("kind,text,image,ok", [
    (QueryKind.TEXT, "red mug", False, True),
    (QueryKind.TEXT, "", False, False),
    (QueryKind.TEXT, "red mug", True, False),
    (QueryKind.IMAGE, None, True, True),
    (QueryKind.IMAGE, "x", True, False),
    (QueryKind.PRODUCT, "red mug", True, True),
    (QueryKind.PRODUCT, "red mug", False, False),
])
def test_query_inputs_must_match_kind(kind, text, image, ok):
    make = lambda: QueryRecord(query_id="q", kind=kind, text=text,
                               image=_image() if image else None, positive_id="p")
    if ok:
        assert make().kind == kind
    else:
        with pytest.raises(ValidationError):
            make()


def test_views():
    assert IMAGE_VIEW.images and not IMAGE_VIEW.title
    with pytest.raises(ValidationError, match="at least"):
        ProductView(images=False, title=False, category=False, attributes=False)
