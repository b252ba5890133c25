"""Templates from a driving video: a rendered dancer whose true poses are known."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bodydance.skeleton import REST_JOINTS, pose_skeleton
from bodydance.template_builder import smooth_poses
from bodydance_client.errors import BadTemplateError
from bodydance_client.templates import load_bundled, load_template
from bodydance_client.video import Mp4Writer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def _dancer_scene():
    """The rendered dancer every video here shows (seeded): body, clothes and camera."""
    from synthetic_transfer import Scene

    from bodydance.body import BodyModel, load_open_body_arrays

    return Scene(BodyModel.open_body(), load_open_body_arrays(), np.random.default_rng(11))


def _man_from_the_photo(height: int) -> np.ndarray:
    """The committed Sports2D photo (a real man, head to feet) at ``height`` px: someone who is not the dancer."""
    import cv2

    man = cv2.cvtColor(cv2.imread(str(Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "sports2d.jpg")),
                       cv2.COLOR_BGR2RGB)
    return cv2.resize(man, (round(man.shape[1] * height / man.shape[0]), height), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def driving_video(tmp_path_factory):
    scene = _dancer_scene()
    truth = load_bundled("jumping_jacks")
    frames = range(0, 60, 2)
    path = tmp_path_factory.mktemp("video") / "driving.mp4"
    with Mp4Writer(path, fps=15, crf=16) as writer:
        for i in frames:
            writer.write(scene.render(truth.poses[i], truth.translations[i])[0])
    return path, truth.poses[list(frames)]


def _arm_heights(poses):
    """Wrist height above the shoulders (m) per frame: what a jumping jack is about."""
    out = []
    for pose in poses:
        joints, _ = pose_skeleton(pose, REST_JOINTS)
        out.append(joints[[20, 21], 1].mean() - joints[[16, 17], 1].mean())
    return np.asarray(out)


def test_a_template_built_from_video_follows_the_dance(driving_video, tmp_path):
    video, true_poses = driving_video
    out = tmp_path / "built.npz"
    run = subprocess.run([sys.executable, "-m", "bodydance_client.cli", "build-template", str(video), "--name", "jj",
                          "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    built = load_template(out)
    assert built.num_frames == len(true_poses) and built.fps == pytest.approx(15)
    built_arms, true_arms = _arm_heights(built.poses), _arm_heights(true_poses)
    assert np.corrcoef(built_arms, true_arms)[0, 1] > 0.9  # the arms go up and down with the dancer
    assert np.abs(built_arms - true_arms).mean() < 0.15  # metres


def test_smoothing_keeps_a_constant_pose_and_damps_jitter():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.3, (1, 24, 3)).astype(np.float32)
    constant = np.repeat(base, 20, axis=0)
    assert np.abs(smooth_poses(constant, 2.0) - constant).max() < 1e-4
    jitter = constant + rng.normal(0, 0.05, constant.shape).astype(np.float32)
    assert np.abs(smooth_poses(jitter, 2.0) - constant).mean() < np.abs(jitter - constant).mean() * 0.7


def test_a_video_without_a_dancer_is_refused(tmp_path):
    from bodydance.template_builder import build_template

    path = tmp_path / "empty.mp4"
    with Mp4Writer(path, fps=10) as writer:
        for _ in range(5):
            writer.write(np.full((64, 64, 3), 120, np.uint8))
    with pytest.raises(BadTemplateError, match="found in only"):
        build_template(path, "nobody")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(BadTemplateError):
        build_template(tmp_path / "junk.mp4", "junk")


@pytest.fixture(scope="module")
def video_with_a_passer_by(tmp_path_factory):
    """The rendered dancer on the left; from the 8th frame a taller man stands still on the right."""
    scene = _dancer_scene()
    truth = load_bundled("jumping_jacks")
    frames = list(range(0, 60, 2))
    man = _man_from_the_photo(320)
    path = tmp_path_factory.mktemp("video") / "passer_by.mp4"
    with Mp4Writer(path, fps=15, crf=16) as writer:
        for k, i in enumerate(frames):
            dancer = scene.render(truth.poses[i], truth.translations[i])[0]
            canvas = np.full((320, 720, 3), dancer[0, 0], np.uint8)
            canvas[32:32 + dancer.shape[0], 16:16 + dancer.shape[1]] = dancer
            if k >= 8:
                canvas[:, 720 - man.shape[1]:] = man
            writer.write(canvas)
    return path, truth.poses[frames]


def test_a_template_stays_on_its_dancer_when_someone_else_comes_into_view(video_with_a_passer_by):
    from bodydance.template_builder import build_template

    video, true_poses = video_with_a_passer_by
    built = build_template(video, "followed")
    built_arms, true_arms = _arm_heights(built.poses), _arm_heights(true_poses)
    assert np.corrcoef(built_arms[8:], true_arms[8:])[0, 1] > 0.9  # still the dancer's jumping jacks
    assert np.abs(built.translations[8:, 0]).max() < 0.5  # the root did not leap to the man on the right


@pytest.fixture(scope="module")
def video_where_the_dancer_leaves(tmp_path_factory):
    """The rendered dancer on the left for 20 frames; then he is gone and, for 10 frames, a man stands
    just right of where he was: within the follower's reach (Pose finds him there), his centre 0.6 of
    the dancer's size from the dancer's."""
    scene = _dancer_scene()
    truth = load_bundled("jumping_jacks")
    man = _man_from_the_photo(320)
    path = tmp_path_factory.mktemp("video") / "dancer_leaves.mp4"
    with Mp4Writer(path, fps=15, crf=16) as writer:
        for k, i in enumerate(range(0, 60, 2)):
            dancer = scene.render(truth.poses[i], truth.translations[i])[0]
            canvas = np.full((320, 720, 3), dancer[0, 0], np.uint8)
            if k < 20:
                canvas[32:32 + dancer.shape[0], 16:16 + dancer.shape[1]] = dancer
            else:
                canvas[:, 130:130 + man.shape[1]] = man
            writer.write(canvas)
    return path


def test_a_template_does_not_take_a_passer_by_near_where_the_dancer_was_for_him(video_where_the_dancer_leaves):
    from bodydance.template_builder import build_template

    built = build_template(video_where_the_dancer_leaves, "left")
    assert built.num_frames == 30
    # The frames without the dancer hold where he was last seen: the root stays put (taking the man
    # for him, it moved 0.98 m right).
    assert np.abs(built.translations[20:] - built.translations[19]).max() < 0.05


def test_frames_where_the_dancer_is_sideways_are_filled_not_refused(tmp_path):
    """A cartwheel: three frames turned a quarter round. The photo check refuses such a person; in a
    video they are frames without a fit, filled from their neighbours."""
    from bodydance.template_builder import build_template

    scene = _dancer_scene()
    truth = load_bundled("jumping_jacks")
    path = tmp_path / "cartwheel.mp4"
    with Mp4Writer(path, fps=15, crf=16) as writer:
        for k, i in enumerate(range(0, 32, 2)):
            frame = scene.render(truth.poses[i], truth.translations[i])[0]
            writer.write(np.ascontiguousarray(np.rot90(frame)) if 6 <= k < 9 else frame)
    built = build_template(path, "cartwheel")
    assert built.num_frames == 16
    assert np.isfinite(built.poses).all() and np.abs(built.translations).max() < 0.3


def _yaw_deg(pose) -> float:
    from bodydance.skeleton import axis_angle_to_matrix

    forward = axis_angle_to_matrix(np.asarray(pose[0], np.float64)) @ np.array([0.0, 0.0, 1.0])
    return float(np.degrees(np.arctan2(forward[0], forward[2])))


def test_frames_where_the_face_is_missed_are_not_spun_round(driving_video, monkeypatch):
    """The dancer faces the camera throughout; the face detector misses the face in a few frames (as it
    does on small or backlit faces). On its own such a frame is fitted as a back; in the template the
    stretch's faces decide and every frame faces front."""
    import av

    from bodydance.stages.reconstruction import subject
    from bodydance.template_builder import build_template

    video, true_poses = driving_video
    missed_calls = {3, 4, 5, 11, 19}
    calls = []

    def face_in(self, photo, box):
        calls.append(box)
        return len(calls) - 1 not in missed_calls

    monkeypatch.setattr(subject.Reconstructor, "_face_in", face_in)
    with av.open(str(video)) as container:
        frame = next(container.decode(container.streams.video[0])).to_ndarray(format="rgb24")
    with subject.Reconstructor(frame_person=False) as reconstruct:
        calls[:] = [None] * 3  # the next call is a missed one
        alone = reconstruct(frame)
    assert alone.facing == "back" and abs(_yaw_deg(alone.source_pose)) > 150  # what one frame decides alone

    calls.clear()
    built = build_template(video, "missed_faces", sigma_frames=0)
    assert len(calls) == len(true_poses)  # the face was looked for once per frame, not again on refitting
    yaws = np.array([abs(_yaw_deg(pose)) for pose in built.poses])
    assert yaws.max() < 30, yaws.round()


def test_a_video_decides_facing_per_stretch_between_profiles():
    from bodydance.stages.reconstruction.facing import FacingEvidence, facing_through_video

    front_face, front_no_face = FacingEvidence(True, True), FacingEvidence(True, False)
    profile, unlooked = FacingEvidence(None, None), FacingEvidence(True, None)
    video = ([front_face, front_no_face, front_face, front_no_face, front_face]  # face seen: the front
             + [profile]  # the dancer turns
             + [front_no_face] * 9 + [front_face]  # a face in 1 of 10: the back
             + [None]  # lost
             + [unlooked] * 3)  # nothing to decide from
    decided = facing_through_video(video)
    assert decided == [True] * 5 + [None] + [False] * 10 + [None] + [None] * 3
