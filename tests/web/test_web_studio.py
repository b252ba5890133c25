"""What the page does, on the real server but without a browser: a driving video, a bad photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bodydance_client import web
from bodydance_client.errors import BadImageError
from bodydance_client.video import Mp4Writer, read_video

ROOT = Path(__file__).resolve().parents[2]
ASTRONAUT = ROOT / "client" / "bodydance_client" / "data" / "astronaut.jpg"


@pytest.fixture
def studio(server, tmp_path):
    s = web.DanceStudio(server.grpc_url, root=tmp_path, timeout_s=120)
    yield s
    s.close()


@pytest.mark.server
def test_a_driving_video_becomes_the_dance(studio, tmp_path):
    """The template builder runs on the upload; the video has one frame per frame of the driving video."""
    driving = tmp_path / "driving.mp4"
    photo = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    with Mp4Writer(driving, fps=10) as writer:
        for shift in range(6):  # the person sways a little, so every frame is decoded and fitted
            writer.write(np.roll(photo, 2 * shift, axis=1))
    seen = []
    result = studio.dance(ASTRONAUT, web.OWN_DANCE, driving, progress=lambda done, total, what: seen.append(what))
    frames, fps, _ = read_video(result.video)
    assert result.frames == len(frames) == 6 and fps == pytest.approx(10)
    assert result.template_name == "your dance" and result.sheet.is_file()
    assert "reading your dance video (frames)" in seen and "making frames" in seen
    studio.release(result.job)
    assert not result.job.exists()


@pytest.mark.server
def test_a_file_that_is_no_picture_is_a_bad_image_not_a_crash(studio, tmp_path):
    gr = pytest.importorskip("gradio")
    from gradio.data_classes import FileData

    junk = tmp_path / "holiday.jpg"
    junk.write_bytes(b"this is not a JPEG" * 100)
    component = web._tolerant_preprocess(gr.Image(type="filepath", image_mode=None))
    path = component.preprocess(FileData(path=str(junk), orig_name="holiday.jpg"))  # Pillow cannot open it
    assert path == str(junk)
    with pytest.raises(BadImageError) as refused:
        studio.dance(path, "wave")
    assert "could not be read as a photo" in web.user_message(refused.value)
    assert not list(studio.root.glob("job-*"))  # a failed job leaves nothing behind
