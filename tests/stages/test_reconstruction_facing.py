"""Which way the person faces, decided from evidence: renders with known truth, front, profile and back."""

import sys
from pathlib import Path

import numpy as np
import pytest

from bodydance.skeleton import axis_angle_to_matrix
from bodydance.stages.reconstruction import subject as reconstruction
from bodydance.stages.reconstruction.facing import mirror_front_to_back, shoulders_say_front

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.fixture(scope="module")
def scene():
    from synthetic_transfer import Scene

    from bodydance.body import BodyModel, load_open_body_arrays

    return Scene(BodyModel.open_body(), load_open_body_arrays(), np.random.default_rng(2))


def _render(scene, yaw_deg: float):
    pose = np.zeros((24, 3), np.float32)
    pose[0, 1] = np.radians(yaw_deg)
    pose[16, 2], pose[17, 2] = -1.1, 1.1  # arms lowered from the T
    return scene.render(pose)[0]


def _fitted_yaw(out) -> float:
    forward = axis_angle_to_matrix(out.source_pose[0].astype(np.float64)) @ np.array([0.0, 0.0, 1.0])
    return float(np.degrees(np.arctan2(forward[0], forward[2])))


def _off(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


@pytest.mark.parametrize("yaw, verdict", [(0, "front"), (90, "profile"), (-90, "profile"), (180, "back"), (150, "back")])
def test_renders_are_fitted_facing_the_way_the_body_faces(reconstructor, scene, yaw, verdict):
    out = reconstructor(_render(scene, yaw))
    assert out.facing == verdict
    assert _off(_fitted_yaw(out), yaw) < 30


@pytest.mark.parametrize("yaw", [0, 180])
def test_a_pose_detector_that_mistakes_the_back_for_the_front_is_overruled_by_the_face(reconstructor, scene, yaw,
                                                                                      monkeypatch):
    """Pose's landmarks are mirrored front to back (what it answers for many real back views); the face
    detector on the head decides, and the fit faces the way the render does."""
    detect = reconstruction.Reconstructor._detect

    def fooled(self, photo, region=None):
        image_lm, world_lm, mask, people = detect(self, photo, region)
        return (*mirror_front_to_back(image_lm, world_lm), mask, people)

    monkeypatch.setattr(reconstruction.Reconstructor, "_detect", fooled)
    out = reconstructor(_render(scene, yaw))
    assert out.facing == ("front" if yaw == 0 else "back")
    assert _off(_fitted_yaw(out), yaw) < 30


def test_mirroring_front_to_back_twice_changes_nothing_and_keeps_the_image_points():
    rng = np.random.default_rng(0)
    image_lm, world_lm = rng.random((33, 3)), rng.normal(size=(33, 3))
    once_image, once_world = mirror_front_to_back(image_lm, world_lm)
    assert np.allclose(once_image[12], image_lm[11])  # the point called the left shoulder is now the right one
    twice_image, twice_world = mirror_front_to_back(once_image, once_world)
    assert np.allclose(twice_image, image_lm) and np.allclose(twice_world, world_lm)


def test_the_shoulders_order_says_front_back_or_profile():
    xy, visibility = np.zeros((33, 2)), np.ones(33)
    xy[23], xy[24] = (110, 300), (90, 300)  # hips
    for left_x, expected in ((140, True), (60, False), (105, None)):
        xy[11], xy[12] = (left_x, 100), (200 - left_x, 100)
        assert shoulders_say_front(xy, visibility) is expected


def test_a_face_dark_against_the_sky_is_found_with_its_levels_stretched(reconstructor):
    """The Sports2D dancer's head in frame 17: he faces the camera, backlit; the detectors miss his face
    as the crop is (the fit would dance his back), and find it once its levels are stretched."""
    from PIL import Image

    from bodydance.stages.reconstruction.facing import levels_stretched

    head = np.asarray(Image.open(Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "sports2d_head.png")
                      .convert("RGB"))
    box = (0, 0, head.shape[1], head.shape[0])
    crop, _ = reconstructor._head_crop(head, box)
    assert not reconstructor._detects_face(crop)
    assert reconstructor._detects_face(levels_stretched(crop))
    assert reconstructor._face_in(head, box)
