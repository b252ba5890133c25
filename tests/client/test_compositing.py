"""Frames of the working square composited onto the photo at its own resolution (no server needed)."""

import numpy as np

from bodydance_client.compositing import composite, square_in


def test_where_alpha_is_zero_the_photo_is_untouched_and_where_it_is_full_the_frame_shows():
    canvas = np.full((300, 500, 3), 40, np.uint8)
    frame = np.full((64, 64, 3), 220, np.uint8)
    alpha = np.zeros((64, 64, 1), np.uint8)
    alpha[16:48, 16:48] = 255
    out = composite(canvas, (100.0, 50.0, 200.0), frame, alpha)
    assert out.shape == canvas.shape and out.dtype == np.uint8
    assert np.all(out[:, :100] == 40) and np.all(out[:50] == 40) and np.all(out[:, 300:] == 40)
    # the square's centre (photo px 200, 150) is in the alpha's full part
    assert np.all(out[130:170, 180:220] == 220)
    # inside the square but where alpha is 0 (its corner) the photo shows
    assert np.all(out[52:60, 102:110] == 40)
    assert not np.shares_memory(out, canvas)


def test_a_square_reaching_past_the_photo_is_clipped():
    canvas = np.zeros((100, 100, 3), np.uint8)
    frame = np.full((32, 32, 3), 255, np.uint8)
    alpha = np.full((32, 32, 1), 255, np.uint8)
    out = composite(canvas, (-50.0, -50.0, 200.0), frame, alpha)
    assert out.shape == (100, 100, 3) and np.all(out == 255)
    assert np.array_equal(composite(canvas, (500.0, 500.0, 50.0), frame, alpha), canvas)


def test_the_square_scales_with_the_canvas():
    assert square_in((10.0, -20.0, 300.0), (500, 1000), (1000, 2000)) == (20.0, -40.0, 600.0)
