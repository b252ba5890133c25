"""The working square: its geometry, and how the subject side chooses it around the person."""

import numpy as np
import pytest

from bodydance.skeleton import REST_JOINTS, project
from bodydance.stages.reconstruction.framing import choose_square, dance_box_ndc
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
