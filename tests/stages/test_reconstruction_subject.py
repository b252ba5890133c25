"""Stage 1 subject side: photo checks, MediaPipe landmarks -> SMPL-format fit, real photos from packages."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from bodydance.stages.reconstruction import fit as body_fit
from bodydance.stages.reconstruction import landmarks
from bodydance.stages.reconstruction import photo as photo_input
from bodydance.stages.reconstruction import subject as reconstruction
from bodydance.skeleton import REST_JOINTS, pose_skeleton, project, shaped_rest_joints
from bodydance_client import contract as C
from bodydance_client.errors import BadImageError, NoPersonError

LEGS = [landmarks.J[n] for n in ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")]
UPPER = [landmarks.J[n] for n in ("neck", "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
                          "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand")]

# A full-body photo, committed: a frame of the Sports2D package's demo video (BSD-3-Clause; source, crop and
# licence in benchmarks/data/sports2d.LICENSE.txt). A man standing on a wall, arms out, head to feet in the picture.
FULL_BODY_PHOTO = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "sports2d.jpg"
# The same video's frame 9, whole and at half size (884 x 497): the man a third of the photo's height, legs apart.
WIDE_PHOTO = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "sports2d_wide.jpg"


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def full_body_photo() -> np.ndarray:
    bgr = cv2.imread(str(FULL_BODY_PHOTO))
    assert bgr is not None, FULL_BODY_PHOTO
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _check_contract(out: reconstruction.SubjectReconstruction, n: int) -> None:
    for spec in C.SUBJECT_RECONSTRUCTION.outputs:
        value = getattr(out, spec.name)
        assert value.dtype == spec.dtype, spec.name
        assert value.shape == spec.concrete_shape(n), spec.name
        assert np.isfinite(value).all(), spec.name
    assert out.person_count.tolist() == [1]
    assert out.source_image.dtype == np.uint8 and out.plate_fill.dtype == np.uint8  # the wire's levels
    assert 0.0 <= out.person_mask.min() and out.person_mask.max() <= 1.0
    assert np.abs(out.betas).max() <= body_fit.MAX_ABS_BETA
    assert out.joints_2d.shape == (24, 2) and np.isfinite(out.joints_2d).all()
    assert out.joint_confidence.shape == (24,) and np.isfinite(out.reprojection_px)


def _hull_mean(mask: np.ndarray, points_ndc: np.ndarray) -> float:
    n = mask.shape[-1]
    hull = cv2.convexHull(((points_ndc + 1) * n / 2).astype(np.float32)).astype(np.int32)
    region = np.zeros((n, n), np.uint8)
    cv2.fillConvexPoly(region, hull, 1)
    assert region.sum() > 0.01 * n * n
    return float(mask[region > 0].mean())


def _fitted_2d(out: reconstruction.SubjectReconstruction) -> np.ndarray:
    joints, _ = pose_skeleton(out.source_pose, shaped_rest_joints(out.betas))
    return project(joints, out.camera)


# --------------------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("photo, words", [
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (np.zeros((64, 64), np.uint8), "H x W x 3"),
    (np.zeros((64, 64, 4), np.uint8), "H x W x 3"),
    (np.zeros((8, 64, 3), np.uint8), "each side"),
    (np.zeros((C.MAX_PHOTO_SIDE + 1, 32, 3), np.uint8), "each side"),
    ([[0, 0, 0]], "numpy array"),
])
def test_bad_photos_are_refused_with_a_precise_message(reconstructor, photo, words):
    with pytest.raises(BadImageError, match=words):
        reconstructor(photo)


@pytest.mark.parametrize("photo", [
    np.full((300, 400, 3), 128, np.uint8),
    np.zeros((64, 64, 3), np.uint8),
    np.random.default_rng(0).integers(0, 256, (256, 256, 3)).astype(np.uint8),
])
def test_photos_without_a_person_raise_no_person(reconstructor, photo):
    with pytest.raises(NoPersonError, match="no person"):
        reconstructor(photo)


def test_too_small_a_person_is_refused():
    confidence = np.ones(33)
    small = np.random.default_rng(1).uniform(0.0, 0.1, (33, 2))  # 5 % of the square
    with pytest.raises(NoPersonError, match="too small"):
        landmarks.check_person_size(small, confidence)
    landmarks.check_person_size(small * 3, confidence)  # 15 %: fine
    with pytest.raises(NoPersonError, match="no person"):
        landmarks.check_person_size(small * 3, np.where(np.arange(33) < 3, 1.0, 0.1))


def test_landmarks_map_through_the_same_letterbox_as_the_image():
    h, w, n = 90, 160, 64
    photo = np.zeros((h, w, 3), np.uint8)
    photo[30:36, 120:126] = 255  # a bright 6x6 square centred at (123, 33) px
    boxed = photo_input.crop_square(photo, C.PhotoSquare.letterbox(h, w, n), fill=0)[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:n, 0:n]
    centre_px = np.array([(xs * boxed).sum(), (ys * boxed).sum()]) / boxed.sum()
    centre_ndc = (centre_px + 0.5) * 2 / n - 1  # pixel centres at (2i + 1) / N - 1
    expected = C.PhotoSquare.letterbox(h, w, n).to_ndc(np.array([123.0, 33.0]))
    assert np.allclose(centre_ndc, expected, atol=1.0 / n)


# --------------------------------------------------------------------------------------- fitting


def _synthetic(seed: int, upright: bool = False):
    rng = np.random.default_rng(seed)
    pose = rng.normal(0.0, 0.3, (24, 3))
    pose[0] = (rng.uniform(-0.3, 0.3), rng.uniform(-1.2, 1.2), rng.uniform(-0.2, 0.2))
    if upright:
        pose[[0, 3, 6, 9]] = 0.0
        pose[0, 1] = rng.uniform(-0.8, 0.8)
    betas = np.zeros(10)
    betas[0] = rng.uniform(-1.5, 1.5)
    camera = np.array([rng.uniform(0.8, 2.0), rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)])
    joints, _ = pose_skeleton(pose.astype(np.float32), shaped_rest_joints(betas))
    joints = joints.astype(np.float64)
    return pose, betas, camera, joints, project(joints, camera)


@pytest.mark.parametrize("seed", range(4))
def test_fit_recovers_a_known_pose_shape_and_camera(seed):
    _, betas, camera, joints, joints_2d = _synthetic(seed)
    # MediaPipe's world landmarks are hip-centred: the fit must not care about the origin.
    fit = body_fit.fit_body(joints - joints[0] + [0.2, -0.1, 0.3], joints_2d, np.ones(24))
    assert np.linalg.norm(fit.joints - joints, axis=-1).max() < 0.01  # metres
    assert abs(fit.camera[0] / camera[0] - 1) < 0.01
    assert np.abs(fit.camera[1:] - camera[1:]).max() < 0.01
    # Compare what a beta means, body height (one unit of beta0 is ~9.6 cm): within 2 cm.
    def stature(b):
        rest = shaped_rest_joints(np.asarray(b, np.float32))
        return rest[15, 1] - min(rest[7, 1], rest[8, 1])
    assert abs(stature(fit.betas) - stature(betas)) < 0.02 and not fit.betas[1:].any()
    assert fit.rms_ndc < 1e-3


def test_refinement_reduces_the_reprojection_error_of_noisy_3d():
    gains = []
    for seed in range(3):
        _, _, _, joints, joints_2d = _synthetic(seed)
        noisy = joints + np.random.default_rng(seed).normal(0.0, 0.03, joints.shape)  # 3 cm landmark noise
        fit = body_fit.fit_body(noisy, joints_2d, np.ones(24))
        assert np.isfinite(fit.rms_ndc_closed_form) and fit.rms_ndc < fit.rms_ndc_closed_form
        gains.append(fit.rms_ndc / fit.rms_ndc_closed_form)
    assert np.mean(gains) < 0.7


def test_unseen_joints_keep_the_default_whatever_their_landmarks_say():
    _, _, camera, joints, joints_2d = _synthetic(7, upright=True)
    confidence = np.ones(24)
    hidden = LEGS + [landmarks.J[n] for n in ("pelvis", "spine1", "spine2", "spine3", "left_foot", "right_foot")]
    confidence[hidden] = np.random.default_rng(0).uniform(0.0, 0.49, len(hidden))
    garbage_3d, garbage_2d = joints.copy(), joints_2d.copy()
    garbage_3d[hidden] = np.random.default_rng(1).normal(0.0, 5.0, (len(hidden), 3))
    garbage_2d[hidden] = np.nan
    fit = body_fit.fit_body(garbage_3d, garbage_2d, confidence)
    assert np.isfinite(fit.pose).all() and np.isfinite(fit.camera).all()
    assert np.abs(fit.pose[LEGS]).max() < 1e-3  # legs straight, as at rest
    assert abs(fit.camera[0] / camera[0] - 1) < 0.05
    seen = confidence >= landmarks.VISIBLE
    assert np.abs(project(fit.joints, fit.camera) - joints_2d)[seen].max() < 0.02  # NDC
    # The legs hang below the pelvis in the image (y down).
    fitted_2d = project(fit.joints, fit.camera)
    assert (fitted_2d[[landmarks.J["left_ankle"], landmarks.J["right_ankle"]], 1] > fitted_2d[landmarks.J["pelvis"], 1] + 0.5 * camera[0]).all()


def test_a_rest_body_seen_through_the_landmark_map_fits_near_rest():
    rest = REST_JOINTS.astype(np.float64)
    lm = np.zeros((33, 3))
    direct = ("hip", "shoulder", "elbow", "wrist", "knee", "ankle")
    for side in ("left", "right"):
        for part in direct:
            lm[landmarks.LANDMARKS[f"{side}_{part}"]] = rest[landmarks.J[f"{side}_{part}"]]
        hand, foot = rest[landmarks.J[f"{side}_hand"]], rest[landmarks.J[f"{side}_foot"]]
        lm[landmarks.LANDMARKS[f"{side}_index"]], lm[landmarks.LANDMARKS[f"{side}_pinky"]] = hand + [0, 0, 0.02], hand - [0, 0, 0.02]
        d = np.array([0.0, 0.02, 0.16])
        lm[landmarks.LANDMARKS[f"{side}_foot_index"]], lm[landmarks.LANDMARKS[f"{side}_heel"]] = foot + 0.25 * d, foot - 0.75 * d
    sign = {"left": 1.0, "right": -1.0}
    for side in ("left", "right"):
        lm[landmarks.LANDMARKS[f"{side}_ear"]] = rest[landmarks.J["head"]] + [sign[side] * 0.07, 0.0, 0.0]
    joints_3d, confidence = landmarks.landmarks_to_joints(lm, np.ones(33))
    assert (confidence[list(landmarks.SPINE)] == 0).all() and (np.delete(confidence, list(landmarks.SPINE)) == 1).all()
    fit = body_fit.fit_body(joints_3d, joints_3d[:, :2] * [1, -1], confidence)
    error = np.linalg.norm(fit.joints - rest, axis=-1)
    assert np.delete(error, list(landmarks.SPINE)).max() < 0.04
    assert np.abs(fit.pose[LEGS]).max() < 0.1 and np.abs(fit.pose[0]).max() < 0.1


# --------------------------------------------------------------------------------------- real photos


def test_half_body_astronaut(reconstructor, astronaut):
    n = 256
    out = reconstructor(astronaut)
    _check_contract(out, n)
    seen = out.joint_confidence >= landmarks.VISIBLE
    assert seen[[landmarks.J["left_shoulder"], landmarks.J["right_shoulder"], landmarks.J["head"]]].all()
    assert not seen[LEGS].any()
    # Visible joints reproject within 8 % of the image, 4 % on average.
    error = np.linalg.norm(_fitted_2d(out) - out.joints_2d, axis=-1)[seen] / 2
    assert error.max() < 0.08 and error.mean() < 0.04
    assert abs(out.reprojection_px - np.sqrt(((error * n) ** 2).mean())) < 1e-3 * n
    # Legs default to straight, hanging below the pelvis.
    assert np.abs(out.source_pose[LEGS]).max() < 0.05
    fitted = _fitted_2d(out)
    assert (fitted[[landmarks.J["left_ankle"], landmarks.J["right_ankle"]], 1] > fitted[landmarks.J["pelvis"], 1] + 0.5).all()
    # The mask covers the person (head and shoulders) and not the flag in the top-left corner.
    assert _hull_mean(out.person_mask[0], out.joints_2d[seen]) > 0.5
    assert out.person_mask[0, :40, :40].mean() < 0.2
    # source_image is the photo (square, so no bars) at N x N.
    expected = cv2.resize(astronaut, (n, n), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    assert np.array_equal(out.source_image, expected)
    # The plate: the person is gone (every masked pixel refilled), the flag corner is the photo's own.
    changed = np.abs(out.plate_fill.astype(int) - out.source_image).max(0) > 0
    assert changed[out.person_mask[0] > 0.5].mean() > 0.97
    assert not changed[:40, :40].any()


def test_reconstruct_matches_the_reconstructor_and_letterboxes_with_grey_bars(reconstructor, astronaut):
    tall = np.ascontiguousarray(astronaut[:, 96:416])  # 512 x 320: bars left and right
    out = reconstruction.reconstruct(tall, resolution=128)
    _check_contract(out, 128)
    again = reconstructor(tall, resolution=128)
    assert np.array_equal(out.source_pose, again.source_pose) and np.array_equal(out.person_mask, again.person_mask)
    square = C.PhotoSquare.letterbox(*tall.shape[:2], 128)
    left = int(-square.left * square.scale)  # the grey bar, square px
    assert left > 0
    assert (out.source_image[:, :, :left - 1] == photo_input.PAD_VALUE).all()
    assert out.person_mask[0, :, :left - 1].max() == 0.0


def test_one_reconstructor_serves_threads(reconstructor, astronaut):
    expected = reconstructor(astronaut)
    results, errors = [], []

    def work():
        try:
            for _ in range(2):
                results.append(reconstructor(astronaut))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == 6
    for r in results:
        assert np.array_equal(r.source_pose, expected.source_pose) and np.array_equal(r.camera, expected.camera)


def _fitted_silhouette(out: reconstruction.SubjectReconstruction) -> np.ndarray:
    import torch

    from bodydance.body import BodyModel, load_open_body_arrays
    from bodydance.reference_render import rasterize

    arrays = load_open_body_arrays()
    with torch.no_grad():
        verts, _ = BodyModel.open_body()(torch.from_numpy(out.betas[None]), torch.from_numpy(out.source_pose[None]),
                                         torch.zeros(1, 3))
    return rasterize(verts[0].numpy(), arrays["faces"], out.camera, out.person_mask.shape[-1]).silhouette


def test_full_body_photo_from_a_package(reconstructor, full_body_photo):
    n = 256
    out = reconstructor(full_body_photo)
    _check_contract(out, n)
    seen = out.joint_confidence >= landmarks.VISIBLE
    # Everything but the spine (which MediaPipe never sees) is seen, ankles and feet included.
    assert seen[LEGS + UPPER].all() and seen[[landmarks.J["left_foot"], landmarks.J["right_foot"]]].all()
    fitted = _fitted_2d(out)
    error = np.linalg.norm(fitted - out.joints_2d, axis=-1)[seen] / 2
    assert error.max() < 0.03 and out.reprojection_px < 0.01 * n
    # Standing: head above pelvis above knees above ankles, knees nearly straight.
    y = fitted[:, 1]
    assert y[landmarks.J["head"]] < y[landmarks.J["pelvis"]] < y[landmarks.J["left_knee"]] < y[landmarks.J["left_ankle"]]
    assert y[landmarks.J["pelvis"]] < y[landmarks.J["right_knee"]] < y[landmarks.J["right_ankle"]]
    assert np.linalg.norm(out.source_pose[[landmarks.J["left_knee"], landmarks.J["right_knee"]]], axis=-1).max() < 0.6
    # The legs are fitted to what the photo shows, not the straight default of a half-body photo.
    assert np.abs(out.source_pose[LEGS]).max() > 0.05
    # Full height: the fitted body spans the person from head to ankles as seen (within 5 %), and the person
    # (about 70 % of the photo height) spans most of the square's height.
    ankles = [landmarks.J["left_ankle"], landmarks.J["right_ankle"]]
    seen_span = out.joints_2d[ankles, 1].max() - out.joints_2d[landmarks.J["head"], 1]
    assert abs((y[ankles].max() - y[landmarks.J["head"]]) / seen_span - 1) < 0.05
    assert 0.4 < np.ptp(out.joints_2d[seen, 1]) / 2 < 0.9
    assert abs(out.betas[0]) < 1.5  # an adult of ordinary height
    # Arms held out: the wrists are further from the body's midline than the shoulders, on their own side.
    for side, sign in (("left", 1.0), ("right", -1.0)):  # the person's left is the image's right
        wrist, shoulder = fitted[landmarks.J[f"{side}_wrist"], 0], fitted[landmarks.J[f"{side}_shoulder"], 0]
        assert sign * (wrist - shoulder) > 0.1
    # The person mask and the fitted mesh's silhouette agree.
    mask, silhouette = out.person_mask[0] > 0.5, _fitted_silhouette(out)
    assert (mask & silhouette).sum() / (mask | silhouette).sum() > 0.7
    assert out.person_mask[0, :20].max() < 0.2 and out.person_mask[0, -40:].max() < 0.2  # not the sky, not the wall


def test_a_person_small_in_a_wide_photo_is_fitted_through_a_closer_look(reconstructor):
    """Pose's first look at the whole photo places the man's legs wrongly (fitted body and person mask
    overlap 0.66); seen again through a crop around him they agree."""
    photo = cv2.cvtColor(cv2.imread(str(WIDE_PHOTO)), cv2.COLOR_BGR2RGB)
    out = reconstructor(photo)
    mask, silhouette = out.person_mask[0] > 0.5, _fitted_silhouette(out)
    assert (mask & silhouette).sum() / (mask | silhouette).sum() > 0.75
    seen = out.joint_confidence >= landmarks.VISIBLE
    assert seen[LEGS].all()
    error = np.linalg.norm(_fitted_2d(out) - out.joints_2d, axis=-1)[seen] / 2
    assert error.max() < 0.03


def test_several_people_are_counted_and_the_largest_is_fitted():
    """The astronaut twice, the second copy much smaller: two people, the fit on the large one (left)."""
    from PIL import Image

    from skimage import data

    big = data.astronaut()
    small = np.asarray(Image.fromarray(big).resize((300, 300)))
    photo = np.full((512, 900, 3), 230, np.uint8)
    photo[:, :512] = big
    photo[212:, 560:860] = small
    alone = reconstruction.reconstruct(big)
    both = reconstruction.reconstruct(photo)
    assert int(alone.person_count[0]) == 1 and int(both.person_count[0]) == 2
    assert both.camera[1] < -0.3  # centred on the left, where the large astronaut stands
    assert both.camera[0] > 1.2  # at her scale, not the small copy's


@pytest.mark.parametrize("turned", [1, 2, 3])
def test_a_person_upside_down_or_sideways_is_refused_with_the_turn_that_stands_them_up(reconstructor, astronaut, turned):
    from bodydance_client.errors import PhotoNotUprightError

    photo = np.ascontiguousarray(np.rot90(astronaut, turned))
    with pytest.raises(PhotoNotUprightError, match="upside down" if turned == 2 else "lying sideways") as caught:
        reconstructor(photo)
    assert caught.value.quarter_turns == (4 - turned) % 4
    upright = reconstructor(np.ascontiguousarray(np.rot90(photo, caught.value.quarter_turns)))
    assert upright.reprojection_px < 8


def _torso_at(degrees: float):
    """Landmarks of a torso whose head points ``degrees`` clockwise from the image's up (y down)."""
    from bodydance.stages.reconstruction.landmarks import LANDMARKS

    xy, visibility = np.zeros((33, 2)), np.zeros(33)
    angle = np.radians(degrees)
    up = np.array([np.sin(angle), -np.cos(angle)])
    for side, offset in (("left", 1.0), ("right", -1.0)):
        across = np.array([-up[1], up[0]]) * offset * 20
        xy[LANDMARKS[f"{side}_hip"]] = across
        xy[LANDMARKS[f"{side}_shoulder"]] = across + 100 * up
        visibility[[LANDMARKS[f"{side}_hip"], LANDMARKS[f"{side}_shoulder"]]] = 1.0
    return xy, visibility


def test_a_slanted_person_is_refused_without_a_turn_to_guess():
    from bodydance.stages.reconstruction.landmarks import check_upright
    from bodydance_client.errors import PhotoNotUprightError

    with pytest.raises(PhotoNotUprightError, match="135 degrees clockwise") as caught:
        check_upright(*_torso_at(135.0))  # between a quarter and a half turn
    assert caught.value.quarter_turns is None
    check_upright(*_torso_at(30.0))  # a lean is not a rotated photo
