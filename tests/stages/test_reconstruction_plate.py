"""Stage 1 subject side, the background plate: the hole covers the whole person, fringe included, and is filled."""

import numpy as np

from bodydance.stages.reconstruction import plate

N = 128


def test_the_hole_takes_the_mask_s_fringe_and_grows():
    mask = np.zeros((N, N), np.float32)
    mask[40:80, 50:70] = 0.9
    mask[40:80, 70:74] = 0.3  # the soft fringe: hair, a blurred arm
    hole = plate.person_hole(mask)
    assert hole[40:80, 50:74].all()
    grow = max(2, round(N * plate.GROW_SHARE))
    assert hole[40:80, 50 - grow].all() and not hole[60, 50 - grow - 2]
    assert hole[60, 73 + grow] and not hole[60, 73 + grow + 2]
    assert not hole[:30].any()
    silhouette = np.zeros((N, N), bool)
    silhouette[90:100, 60:70] = True  # a limb the mask missed, when the caller has one
    assert plate.person_hole(mask, silhouette)[90:100, 60:70].all() and not hole[90:100, 60:70].any()


def _two_halves():
    """A photo whose top half is one colour with stripes and whose bottom half another: an edge a
    flat fill cannot continue."""
    yy, xx = np.mgrid[0:N, 0:N]
    top = np.stack([np.where((xx // 8) % 2 == 0, 200, 170), np.full((N, N), 90), np.full((N, N), 40)], -1)
    bottom = np.stack([np.full((N, N), 30), np.full((N, N), 120), np.where((xx // 8) % 2 == 0, 220, 190)], -1)
    return np.where((yy < N // 2)[..., None], top, bottom).astype(np.uint8)


def test_inpainting_keeps_the_photo_outside_the_hole_and_carries_the_edge_inside():
    truth = _two_halves()
    hole = np.zeros((N, N), bool)
    hole[34:94, 54:74] = True  # a person-sized hole across the edge
    photo = truth.copy()
    photo[hole] = (250, 250, 250)  # the person
    filled = plate.inpaint(photo, hole)
    assert np.array_equal(filled[~hole], photo[~hole])
    error = np.abs(filled[hole].astype(float) - truth[hole]).mean()
    flat = np.abs(photo[~hole].mean(0) - truth[hole]).mean()  # one colour for the whole hole
    assert error < 0.4 * flat
    assert (np.abs(filled[hole].astype(int) - 250).max(-1) < 30).mean() < 0.01  # no trace of the person


def test_a_person_who_fills_the_square_gets_a_flat_plate_not_a_crash():
    photo = _two_halves()
    filled = plate.inpaint(photo, np.ones((N, N), bool))
    assert filled.shape == photo.shape and (filled == filled[0, 0]).all()


def test_no_hole_no_change():
    photo = _two_halves()
    assert np.array_equal(plate.inpaint(photo, np.zeros((N, N), bool)), photo)
