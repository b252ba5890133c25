"""Client-side photo decoding and the all-or-nothing video writer (no server needed)."""

import io

import numpy as np
import pytest
from PIL import Image

from bodydance_client.errors import BadImageError
from bodydance_client.images import UPLOAD_SIDE, load_photo
from bodydance_client.video import Mp4Writer, contact_sheet, read_video


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_modes_become_rgb():
    grey = Image.fromarray(np.full((40, 30), 128, np.uint8), "L")
    rgba = Image.fromarray(np.zeros((40, 30, 4), np.uint8), "RGBA")  # fully transparent -> white
    sixteen = Image.fromarray(np.full((40, 30), 40000, np.uint16).astype(np.int32), "I").convert("I;16")
    for image, fmt in ((grey, "PNG"), (rgba, "PNG"), (sixteen, "PNG")):
        out = load_photo(_encode(image, fmt))
        assert out.shape == (40, 30, 3) and out.dtype == np.uint8
    assert load_photo(_encode(rgba, "PNG")).min() == 255
    assert load_photo(_encode(sixteen, "PNG")).max() == 255  # scaled to the 8-bit range


def test_exif_rotation_is_applied():
    image = Image.fromarray(np.zeros((20, 60, 3), np.uint8))  # landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = load_photo(_encode(image, "JPEG", exif=exif))
    assert out.shape[:2] == (60, 20)  # upright: portrait


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"not an image at all", "could not be decoded"),
    (_encode(Image.new("RGB", (64, 64)), "JPEG")[:200], "could not be decoded"),
    (_encode(Image.new("RGB", (1, 1)), "PNG"), "at least"),
])
def test_bad_photos_raise_bad_image(data, words):
    with pytest.raises(BadImageError, match=words):
        load_photo(data)


def test_arrays_are_checked_and_big_photos_shrink():
    with pytest.raises(BadImageError, match="uint8"):
        load_photo(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(BadImageError, match="HxWx3"):
        load_photo(np.zeros((32, 32, 5), np.uint8))
    big = load_photo(np.zeros((3000, 1500, 3), np.uint8))
    assert big.shape == (UPLOAD_SIDE, UPLOAD_SIDE // 2, 3)


def test_video_is_h264_and_complete(tmp_path):
    path = tmp_path / "v.mp4"
    with Mp4Writer(path, fps=24) as writer:
        for i in range(12):
            writer.write(np.full((65, 49, 3), i * 20, np.uint8))
    frames, fps, codec = read_video(path)
    assert codec == "h264" and fps == 24 and frames.shape == (12, 64, 48, 3)
    assert abs(int(frames[5].mean()) - 100) < 4


def test_failed_video_leaves_nothing(tmp_path):
    path = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError):
        with Mp4Writer(path, fps=24) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("frame 2 failed")
    assert list(tmp_path.iterdir()) == []


def test_contact_sheet(tmp_path):
    frames = [np.full((50, 40, 3), v, np.uint8) for v in (0, 100, 200)]
    path = contact_sheet(frames, tmp_path / "s.png", columns=2, tile=32)
    assert Image.open(path).size == (64, 64)
