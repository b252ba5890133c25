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


def test_the_padding_past_the_photo_s_edge_is_no_source_for_the_fill():
    """The working square reaches past the photo's bottom edge (grey padding); the person's hole
    touches it. The fill must come from the photo, not run grey into the hole."""
    photo = np.zeros((N, N, 3), np.uint8)
    photo[:] = (40, 90, 200)  # a blue wall
    inside = np.ones((N, N), bool)
    inside[100:] = False
    photo[100:] = 127  # the padding (photo.PAD_VALUE)
    hole = np.zeros((N, N), bool)
    hole[60:110, 50:80] = True  # the person, standing on the photo's bottom edge
    padded, kept_out = plate.inpaint(photo, hole), plate.inpaint(photo, hole, inside)
    in_photo = hole & inside
    assert np.abs(kept_out[in_photo].astype(int) - (40, 90, 200)).max() <= 5  # Telea rounds by a few levels
    assert np.abs(padded[in_photo].astype(int) - (40, 90, 200)).max() > 20  # grey ran in before
    assert np.array_equal(kept_out[~hole], photo[~hole])  # the padding itself stays as it was
