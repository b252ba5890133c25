"""The fitted head tilted in the image plane to the face's chin-forehead line (stages/reconstruction/head_tilt.py)."""

import numpy as np
import pytest

from bodydance.skeleton import pose_skeleton, shaped_rest_joints
from bodydance.stages.reconstruction import head_tilt as H
from bodydance.stages.reconstruction.landmarks import J

BETAS = np.zeros(10, np.float32)
CAMERA = np.array([0.9, 0.05, -0.1])


def _bent_pose():
    """A body turned to a three-quarter view and bent forward, its neck bent back: a head the fit
    could have put anywhere."""
    pose = np.zeros((24, 3), np.float32)
    pose[0] = [0.4, 0.8, 0.0]
    pose[J["neck"]] = [-0.2, 0.1, 0.05]
    return pose


def _face_line_turned(pose, angle_rad):
    """The chin-forehead line a photo would show if the head were turned ``angle_rad`` in the image plane."""
    return H._projected_line(H.tilt_head(pose, BETAS, angle_rad), BETAS, CAMERA)


@pytest.mark.parametrize("angle_deg", [-35.0, 20.0, 45.0])
def test_a_head_off_the_photo_s_face_is_turned_onto_it(angle_deg):
    pose = _bent_pose()
    line = _face_line_turned(pose, np.radians(angle_deg))
    assert H.tilt_gap_rad(pose, BETAS, CAMERA, line) == pytest.approx(np.radians(angle_deg), abs=1e-4)
    levelled, turned = H.level_head(pose, BETAS, CAMERA, line)
    assert turned == pytest.approx(np.radians(angle_deg), abs=1e-4)
    assert abs(H.tilt_gap_rad(levelled, BETAS, CAMERA, line)) < 1e-4
    # only the head joint changes: every other joint, and where every joint is, stays
    assert np.array_equal(np.delete(levelled, J["head"], 0), np.delete(pose, J["head"], 0))
    rest = shaped_rest_joints(BETAS)
    assert np.allclose(pose_skeleton(levelled, rest)[0], pose_skeleton(pose, rest)[0], atol=1e-6)


def test_a_head_the_fit_has_nearly_right_is_left_alone():
    pose = _bent_pose()
    line = _face_line_turned(pose, np.radians(8.0))
    levelled, turned = H.level_head(pose, BETAS, CAMERA, line)
    assert turned == 0.0 and levelled is pose


def test_no_face_or_a_foreshortened_one_leaves_the_head_alone():
    pose = _bent_pose()
    assert H.level_head(pose, BETAS, CAMERA, None) == (pose, 0.0)
    line = _face_line_turned(pose, np.radians(30.0))
    short = line[0] + 0.3 * (line - line[0])  # a face seen from far above: its line a third as long
    assert H.tilt_gap_rad(pose, BETAS, CAMERA, short) is None
    far = _face_line_turned(pose, np.radians(90.0))  # more likely a misread face
    assert H.level_head(pose, BETAS, CAMERA, far)[1] == 0.0


def test_the_mesh_s_face_line_runs_up_the_face():
    chin, forehead = H.face_line_m()
    assert 0.12 < forehead[1] - chin[1] < 0.2  # metres, chin to forehead
    assert abs(chin[0]) < 0.01 and abs(forehead[0]) < 0.01 and abs(forehead[2] - chin[2]) < 0.03


def test_the_cameraman_s_head_is_tilted_to_his_face_and_the_astronaut_s_is_not(reconstructor):
    """Real photos through the real MediaPipe reconstruction: the cameraman bends over his camera but
    looks ahead (the fit alone tilts his head some 18 degrees down); the astronaut stands upright."""
    from skimage import data

    cameraman = reconstructor(np.repeat(data.camera()[..., None], 3, axis=2))
    assert np.degrees(np.linalg.norm(cameraman.source_pose[J["head"]])) > np.degrees(H.DEAD_ZONE_RAD)
    astronaut = reconstructor(data.astronaut())
    assert np.array_equal(astronaut.source_pose[J["head"]], np.zeros(3))
