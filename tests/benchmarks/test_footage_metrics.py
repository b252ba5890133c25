"""The real-footage benchmark's pure metrics on cases whose answer is known by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import footage_metrics as M  # noqa: E402


def test_psnr_on_a_mask_counts_only_the_masked_pixels():
    a = np.zeros((20, 30, 3), np.uint8)
    b = np.full_like(a, 100)
    mask = np.zeros((20, 30), bool)
    mask[5:10, 5:15] = True
    b[mask] = 10  # off by 10 levels inside the mask, by 100 outside
    assert M.psnr(a, b, mask) == pytest.approx(20 * np.log10(255 / 10))
    whole_mse = (mask.mean() * 10 ** 2 + (1 - mask.mean()) * 100 ** 2)
    assert M.psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / whole_mse))
    assert M.psnr(a, a, mask) == float("inf")
    assert np.isnan(M.psnr(a, b, np.zeros_like(mask)))


def test_ssim_on_a_mask():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    assert M.ssim(a, a, mask) == pytest.approx(1.0)
    b = a.copy()
    b[~mask] = 255 - b[~mask]  # damage only outside the mask, away from its windows
    inner = np.zeros_like(mask)
    inner[12:20, 12:20] = True
    assert M.ssim(a, b, inner) == pytest.approx(1.0)
    assert M.ssim(a, b) < 0.5


def test_grow_mask_and_height():
    mask = np.zeros((40, 40), bool)
    mask[10:20, 15:18] = True
    assert M.mask_height(mask) == 10
    assert M.mask_height(M.grow_mask(mask, 3)) == 16
    assert M.mask_height(np.zeros((5, 5), bool)) == 0


def _similarity(points, degrees, scale, shift):
    t = np.deg2rad(degrees)
    rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return scale * points @ rotation.T + np.asarray(shift)


def test_procrustes_rectangle_onto_square():
    # A 4x2 rectangle onto a 2x2 square: by symmetry no rotation or shift, scale 12/20,
    # aligned corners (+-1.2, +-0.6), each off by (0.2, 0.4): RMS sqrt(0.2).
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    rectangle = square * [2, 1]
    assert M.procrustes_rms(rectangle, square) == pytest.approx(np.sqrt(0.2))
    # invariant to any similarity applied to the compared points
    moved = _similarity(rectangle, 37, 5.0, (300, -40))
    assert M.procrustes_rms(moved, square) == pytest.approx(np.sqrt(0.2))
    # residual is in the reference's units
    assert M.procrustes_rms(rectangle, square * 10) == pytest.approx(10 * np.sqrt(0.2))


def test_procrustes_exact_similarity_and_no_reflection():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(468, 2)) * 50 + 200
    assert M.procrustes_rms(_similarity(reference, -120, 0.3, (5, 7)), reference) == pytest.approx(0, abs=1e-9)
    mirrored = reference * [-1, 1]
    assert M.procrustes_rms(mirrored, reference) > 10  # a mirror image is not a similarity


def test_face_shape_error_divides_by_interocular_distance():
    reference = np.zeros((468, 2))
    reference[:4] = [[-1, -1], [1, -1], [1, 1], [-1, 1]]
    reference[M.LEFT_EYE_OUTER] = [-2, 0]
    reference[M.RIGHT_EYE_OUTER] = [2, 0]  # inter-ocular distance 4
    points = reference.copy()
    points[0] += [0.5, 0]
    rms = M.procrustes_rms(points, reference)
    assert rms > 0
    assert M.face_shape_error(points, reference) == pytest.approx(rms / 4)


def test_tof_static_output_against_a_known_shift():
    rng = np.random.default_rng(2)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (96, 128)).astype(np.float32), (0, 0), 3)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    shifted = np.roll(texture, 2, axis=1)  # real content moves 2 px right, output stands still
    real = M.farneback(texture, shifted)
    still = M.farneback(texture, texture)
    inner = np.zeros(texture.shape, bool)
    inner[16:-16, 16:-16] = True
    assert np.median(real[inner, 0]) == pytest.approx(2.0, abs=0.1)
    assert M.tof(still, still) == 0.0
    # |2 - 0| on x and |0 - 0| on y, averaged over both components: 1 px
    assert M.tof(still, real, inner) == pytest.approx(1.0, abs=0.1)
    assert M.tof(real, real) == 0.0


def test_summary_skips_missing_values():
    s = M.summary([1.0, 2.0, float("nan"), None, 3.0])
    assert s["median"] == 2.0 and s["n"] == 3
    assert M.summary([])["n"] == 0


def test_face_check_fills_a_missing_frame_s_roll_from_its_found_neighbours():
    from face_check import every_frame_roll

    assert every_frame_roll([None, 10.0, None, 30.0, None]) == pytest.approx([10, 10, 20, 30, 30])
    assert every_frame_roll([None, None]) == []


def test_face_check_measures_a_frame_against_its_own_turned_copy():
    from face_check import against_turned_copies, roll_deg

    rng = np.random.default_rng(0)
    face = rng.normal(size=(468, 2)) * 20 + 100
    face[M.LEFT_EYE_OUTER], face[M.RIGHT_EYE_OUTER] = (80, 100), (120, 100)
    angle = np.radians(20)  # counter-clockwise as the viewer sees it: the image's y axis points down
    turn = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    turned = (face - 100) @ turn.T * 0.5 + 40
    assert roll_deg(turned, face) == pytest.approx(20, abs=1e-6)
    torn = turned.copy()
    torn[:200] += 2.0  # the upper part of the face slid 2 px against the rest
    errors = against_turned_copies([turned, torn, turned, None], [turned * 1.5 + 3, turned, None, turned])
    assert errors[0] == pytest.approx(0.0, abs=1e-9)  # the same shape, only moved and scaled
    assert errors[1] > 0.02  # a tear shows against the copy
    assert errors[2] is None and errors[3] is None
