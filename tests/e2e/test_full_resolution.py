"""The person gets the pixels, the video gets the photo's resolution: a small person in a wide scene, served."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from bodydance_client import contract as C
from bodydance_client.templates import load_bundled
from bodydance_client.video import read_video

pytestmark = pytest.mark.server
FULL_BODY_PHOTO = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "sports2d.jpg"


@pytest.fixture(scope="module")
def wide_scene():
    """The full-body Sports2D photo (580 x 480) standing in a 1600 x 900 scene, left of centre."""
    person = cv2.cvtColor(cv2.imread(str(FULL_BODY_PHOTO)), cv2.COLOR_BGR2RGB)
    scene = np.empty((900, 1600, 3), np.uint8)
    scene[:] = person[-1].mean(0).astype(np.uint8)  # the ground's colour
    scene[:450] = person[0].mean(0).astype(np.uint8)  # the sky's
    scene[300:300 + person.shape[0], 400:400 + person.shape[1]] = person
    return scene


def _rows(mask):
    rows = np.nonzero((mask > 0.5).any(1))[0]
    return rows.max() - rows.min() + 1


def test_a_small_person_in_a_wide_scene_is_danced_at_the_photo_s_resolution(client, wide_scene, tmp_path):
    subject = client.prepare(wide_scene)
    letterbox = C.PhotoSquare.letterbox(*subject.photo_size, subject.resolution)
    assert subject.square.side <= 0.6 * letterbox.side
    tall_in_square = _rows(subject.tensors["person_mask"][0, 0])
    person_px_in_upload = 480 * subject.photo_size[1] / 1600  # how tall the photo shows him, upload px
    assert tall_in_square >= 1.5 * person_px_in_upload * letterbox.scale  # the letterbox would give him fewer

    template = load_bundled("wave")
    out = tmp_path / "wide.mp4"
    client.animate(wide_scene, template, out)
    frames, fps, codec = read_video(out)
    assert frames.shape == (template.num_frames, 900, 1600, 3) and codec == "h264"
    # Far from the square the video is the photo itself (up to H.264), not an upscaled copy.
    far = frames[:, :, 1400:]
    assert subject.square.left * 1600 / subject.photo_size[1] + subject.square.side * 1600 / subject.photo_size[1] < 1400
    assert np.abs(far.astype(int) - wide_scene[None, :, 1400:].astype(int)).mean() < 3
    # The dancer moves inside the square.
    moved = [np.abs(frames[i].astype(int) - frames[0].astype(int))[300:780, 380:900].mean()
             for i in range(0, len(frames), 10)]
    assert max(moved) > 1.0


def test_raw_frames_stay_the_working_square_s_size(client, wide_scene):
    subject = client.prepare(wide_scene)
    raw = next(iter(client.frames(subject, "wave", crop=False)))
    assert raw.shape == C.FRAME.concrete_shape(subject.resolution)


def test_an_upside_down_photo_is_turned_upright_by_the_client_or_refused_by_name(client, server, astronaut_path):
    import warnings

    from PIL import Image

    from bodydance_client.errors import PhotoNotUprightError
    from bodydance_client.sdk import BodyDanceClient

    upright = np.asarray(Image.open(astronaut_path).convert("RGB"))
    upside_down = np.ascontiguousarray(upright[::-1, ::-1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        subject = client.prepare(upside_down)
    assert any("turned the photo" in str(w.message) for w in caught)
    assert np.array_equal(subject.canvas, upright)  # the video is made of the photo turned upright
    with BodyDanceClient(server.grpc_url, turn_upright=False) as strict:
        with pytest.raises(PhotoNotUprightError, match="upside down.*half a turn"):
            strict.prepare(upside_down)


def test_a_person_photographed_leaning_dances_under_their_head_inside_the_photo(client):
    """scikit-image's cameraman, bent over his camera with his hips at the photo's left edge."""
    from skimage import data

    from bodydance_client.sdk import as_template

    photo = np.repeat(data.camera()[..., None], 3, axis=2)
    subject = client.prepare(photo)
    offset = subject.dance_offset
    assert offset.shape == (3,) and 0.15 < offset[0] < 0.5 and offset[1] <= 0.0 and offset[2] == 0.0
    template = as_template("wave")
    first = lambda t, keep: next(iter(client.frames(subject, t, crop=False, keep_in_frame=keep)))  # noqa: E731
    placed = first(template, True)
    assert np.array_equal(placed, first(subject.placed(template), False))  # the offset rides on every request
    unmoved = first(template, False)
    # Stood up over his pelvis, the body's column of pixels sits left of where it dances now.
    body_x = [np.nonzero((np.abs(f.astype(int) - subject.tensors["background"][0].transpose(1, 2, 0)).sum(-1) > 30)
                         .any(0))[0].mean() for f in (unmoved, placed)]
    assert body_x[1] - body_x[0] > 0.5 * offset[0] * subject.tensors["camera"][0, 0] * subject.resolution / 2
