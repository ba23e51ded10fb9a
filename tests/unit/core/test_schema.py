import math

import pytest
from PIL import Image

from editthinker_data.core.schema import Scores, decode_image, encode_png, safe_key
from editthinker_data.sources.classify import classify


def test_overall_is_geometric_mean():
    assert Scores(4.0, 9.0).overall == pytest.approx(6.0)
    assert Scores(0.0, 9.0).overall == 0.0


@pytest.mark.parametrize("bad", [-0.1, 10.5, math.nan])
def test_scores_out_of_range_rejected(bad):
    with pytest.raises(ValueError):
        Scores(bad, 5.0)


def test_safe_key_has_no_dots():
    assert safe_key("img.001/a b") == "img-001-a-b"
    with pytest.raises(ValueError):
        safe_key("...")


def test_png_roundtrip_is_deterministic():
    img = Image.new("RGB", (8, 8), (10, 20, 30))
    assert encode_png(img) == encode_png(img.copy())
    assert decode_image(encode_png(img)).getpixel((3, 3)) == (10, 20, 30)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Make the largest shape yellow.", "reasoning"),
        ("It is nighttime now: change the background accordingly.", "reasoning"),
        ("Replace the background with snow.", "background"),
        ("Apply a sepia style to the whole image.", "style"),
        ("Make it look like a comic.", "style"),
        ("Remove the blue circle.", "subject-driven"),
        ("Add a red circle in the top right.", "subject-driven"),
        ("Make the image brighter.", "other"),
        ("Flip the image horizontally.", "other"),
    ],
)
def test_classifier(text, expected):
    assert classify(text) == expected
