"""The working square: its geometry, and how the subject side chooses it around the person."""

import numpy as np
import pytest

from bodydance.skeleton import REST_JOINTS, project
from bodydance.stages.reconstruction.framing import (
    HEAD_TOP_M, ROOT_RISE_M, choose_square, dance_box_ndc, dance_offset_m, standing_extent,
)
from bodydance.stages.reconstruction.landmarks import J
from bodydance.stages.reconstruction.photo import crop_square
from bodydance_client.contract import PhotoSquare


def test_ndc_and_photo_pixels_are_inverse_and_pixel_centres_land_where_the_contract_says():
    square = PhotoSquare(left=-40, top=30, side=200, resolution=100)
    points = np.array([[0.0, 0.0], [123.4, 56.7], [-40.0, 230.0]])
    assert np.allclose(square.to_photo(square.to_ndc(points)), points)
    # square pixel u covers photo px left + u * side / N ..: its centre is at NDC (2u + 1) / N - 1
    u = 7
    centre_px = square.left + (u + 0.5) * square.side / square.resolution
    assert np.isclose(square.to_ndc([[centre_px, 0.0]])[0, 0], (2 * u + 1) / square.resolution - 1)


def test_a_camera_moved_to_another_square_projects_every_point_to_the_same_photo_pixel():
    a, b = PhotoSquare.letterbox(900, 1600, 256), PhotoSquare(500, 100, 420, 256)
    camera = np.array([0.8, -0.1, 0.05])
    moved = a.reframe_camera(camera, b)
    points = np.random.default_rng(0).normal(size=(20, 3))
    assert np.allclose(a.to_photo(project(points, camera)), b.to_photo(project(points, moved)), atol=1e-3)


def test_the_letterbox_square_centres_the_whole_photo():
    square = PhotoSquare.letterbox(300, 500, 100)
    assert (square.left, square.top, square.side) == (0, -100, 500)
    photo = np.full((300, 500, 3), 200, np.uint8)
    boxed = crop_square(photo, square, fill=0)
    assert np.all(boxed[21:79] == 200) and np.all(boxed[:19] == 0) and np.all(boxed[81:] == 0)  # rows 20-79
    assert np.array_equal(crop_square(photo, PhotoSquare(600, 600, 50, 10), fill=7), np.full((10, 10, 3), 7))


def _standing(scale: float, x: float, y: float):
    """A rest-pose fit standing at NDC (x, y) of the letterbox, ``scale`` NDC per metre."""
    camera = np.array([scale, x, y])
    return camera, REST_JOINTS.astype(np.float64), np.zeros(10, np.float32)


def test_a_small_person_in_a_wide_scene_gets_a_square_around_them_with_room_to_dance():
    h, w, n = 994, 1768, 256
    camera, joints, betas = _standing(0.35, -0.3, -0.2)  # about 350 px tall in 1768 px
    square = choose_square(h, w, n, camera, joints, betas)
    letterbox_square = PhotoSquare.letterbox(h, w, n)
    assert square.side < 0.5 * letterbox_square.side  # the person gets more than twice the pixels
    # the whole dance box (hands over the head, arms out, root motion) is inside the square
    box = letterbox_square.to_photo(dance_box_ndc(camera, joints, betas).reshape(2, 2))
    assert np.all(box[0] >= [square.left, square.top]) and np.all(box[1] <= [square.left + square.side,
                                                                            square.top + square.side])


@pytest.mark.parametrize("scale", [2.5, 3.6])
def test_a_half_body_portrait_keeps_the_whole_photo(scale):
    h, w, n = 512, 512, 256
    camera, joints, betas = _standing(scale, 0.0, 1.0)  # pelvis at the bottom edge: the legs are out of the photo
    square = choose_square(h, w, n, camera, joints, betas)
    assert (square.left, square.top, square.side) == (0, 0, 512)


def test_the_square_holds_the_person_as_the_mask_sees_them():
    h, w, n = 994, 1768, 256
    camera, joints, betas = _standing(0.35, -0.3, -0.2)
    seen_box = (100, 50, 1500, 900)  # a long coat, a wide dress: whatever the mask says is the person
    square = choose_square(h, w, n, camera, joints, betas, seen_box)
    assert square.left <= 100 and square.left + square.side >= 1500 or square.side == max(h, w)


def _leaning(scale: float, x: float, y: float, head_shift_m: float):
    """As :func:`_standing`, with the head ``head_shift_m`` to the person's side (+x: the image's right)."""
    camera, joints, betas = _standing(scale, x, y)
    joints = joints.copy()
    joints[J["head"], 0] += head_shift_m
    return camera, joints, betas


def test_a_person_standing_upright_inside_the_photo_dances_where_they_stand():
    for h, w, scale, x, y in [(994, 1768, 0.35, -0.3, -0.2), (580, 480, 1.2, 0.0, 0.2)]:
        camera, joints, betas = _leaning(scale, x, y, 0.04)  # a slight tilt of the head is no lean
        assert np.array_equal(dance_offset_m(h, w, 256, camera, joints, betas), np.zeros(3, np.float32))


def test_a_leaning_person_dances_under_where_the_photo_shows_the_head():
    h, w = 512, 512
    camera, joints, betas = _leaning(1.9, -0.5, 0.6, 0.3)
    offset = dance_offset_m(h, w, 256, camera, joints, betas)
    assert offset[0] == pytest.approx(0.3, abs=1e-6) and offset[2] == 0.0
    # the square the dance is framed in follows the moved pelvis
    moved, still = (dance_box_ndc(camera, joints, betas, o) for o in (offset, np.zeros(3)))
    assert np.allclose(moved[[0, 2]] - still[[0, 2]], 1.9 * 0.3)


def test_a_dance_that_would_leave_the_photo_sideways_is_moved_back_inside():
    h, w = 512, 512
    camera, joints, betas = _leaning(1.9, -0.95, 0.6, 0.0)  # upright, pelvis at the left edge
    offset = dance_offset_m(h, w, 256, camera, joints, betas)
    head_x = project(joints[J["head"]] + offset, camera)[0]
    assert offset[0] > 0 and head_x - 1.9 * 0.25 >= -1.0 - 1e-6  # the head and the root's room are inside


def test_the_standing_head_is_kept_below_the_photo_top_when_the_photo_shows_the_whole_head():
    h, w, s = 512, 512, 2.0
    top, _ = standing_extent(np.zeros(10))
    # the pelvis so low that standing up (and lifting the root) takes the head 0.03 m past the top
    pelvis_y = -1.0 + s * (top + ROOT_RISE_M - 0.03)
    camera, joints, betas = _leaning(s, 0.0, pelvis_y + s * REST_JOINTS[J["pelvis"], 1], 0.3)
    joints[J["head"], 1] -= 0.2  # bent over: the photo's head is 0.2 m lower than it stands
    offset = dance_offset_m(h, w, 256, camera, joints, betas)
    assert offset[1] == pytest.approx(-0.03, abs=1e-5)
    standing_top = project(joints[J["pelvis"]] + offset, camera)[1] - s * (top + ROOT_RISE_M)
    assert standing_top == pytest.approx(-1.0, abs=1e-5)
    # a portrait cut at the forehead: nothing above it to show, the dance is not moved down
    joints[J["head"], 1] += 0.2 + 0.1
    assert project(joints[J["head"]], camera)[1] - s * HEAD_TOP_M < -1.0
    assert dance_offset_m(h, w, 256, camera, joints, betas)[1] == 0.0
