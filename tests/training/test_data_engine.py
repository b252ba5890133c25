"""The training data engine: scenes fixed by their seed, held-out seeds apart, clothes past the bare body,
and shards that resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bodydance.body import BodyModel, load_open_body_arrays
from bodydance.mesh_raster import MeshRasterizer, to_pixels
from bodydance.training import scenes as S
from bodydance_client import contract as C

N = 128


def test_a_scene_is_fixed_by_its_seed():
    a, b, other = S.Scene(3, N), S.Scene(3, N), S.Scene(4, N)
    assert np.array_equal(a.photo().image, b.photo().image)
    assert not np.array_equal(a.photo().image, other.photo().image)
    poses_a, shifts_a = a.target_poses(2)
    poses_b, shifts_b = b.target_poses(2)
    assert np.array_equal(poses_a, poses_b) and np.array_equal(shifts_a, shifts_b)


def test_consecutive_poses_start_from_the_scenes_own_target_poses():
    poses, shifts = S.Scene(3, N).target_poses(3)
    same, same_shifts, following, following_shifts = S.Scene(3, N).target_pose_pairs(3)
    assert np.array_equal(poses, same) and np.array_equal(shifts, same_shifts)
    step = np.abs(following - poses).max(axis=(1, 2))
    assert (step > 0).all() and (step < 0.5).all()  # the dance's next frame: close, not the same


def test_the_exact_flow_finds_each_shown_point_again():
    scene = S.Scene(5, N)
    (poses, shifts, following, following_shifts) = scene.target_pose_pairs(1)
    now, after = scene.render([poses[0]], [shifts[0]])[0], scene.render([following[0]], [following_shifts[0]])[0]
    still, shown_still = scene.surface_flow(now, poses[0], shifts[0], now)  # the same pose: every point stays put
    rows, cols = np.nonzero(shown_still)
    assert shown_still.sum() > 0.9 * now.person.sum()
    assert np.abs(still[rows, cols] - np.stack([cols, rows], -1)).max() < 0.51
    moved, shown = scene.surface_flow(now, following[0], following_shifts[0], after)
    assert 0.5 * now.person.sum() < shown.sum() <= now.person.sum()
    col, row = np.rint(moved[shown]).astype(int).T
    there, here = scene.faces[after.face[row, col]], scene.faces[now.face[shown]]  # [K,3] corner vertices
    assert (there[:, :, None] == here[:, None, :]).any((1, 2)).all()  # that face, or one touching it, shows there
    assert not shown[~now.person].any()


def test_held_out_seeds_are_never_training_seeds():
    assert max(S.training_seeds(10)) < min(S.held_out_seeds(10))
    with pytest.raises(ValueError, match="below the held-out"):
        S.training_seeds(10, start=S.HELD_OUT_SEED - 5)


def test_every_package_photo_the_scenes_use_loads_offline():
    for name in set(S.BACKGROUND_PHOTOS) | set(S.PRINT_PHOTOS):
        photo = S.package_photo(name)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3, name


def test_hair_and_loose_clothes_reach_past_the_bare_body():
    """Some scenes wear clothes or hair the fitted bare body cannot cover: the truth is wider than it."""
    arrays = load_open_body_arrays()
    bare = BodyModel.open_body()
    raster = MeshRasterizer(arrays["faces"], arrays["v_template"], N, C.MAX_CAMERA_SCALE, 2.6)
    extra = []
    for seed in range(4):
        scene = S.Scene(seed, N)
        clothed = scene.photo().person
        with torch.no_grad():
            vertices, _ = bare(torch.from_numpy(scene.betas)[None], torch.from_numpy(scene.photo_pose)[None],
                               torch.zeros(1, 3))
            body = raster(to_pixels(vertices, torch.from_numpy(scene.camera)[None], N)).covered[0].reshape(N, N).numpy()
        assert (body & ~clothed).sum() <= 0.02 * body.sum()  # clothes cover the body
        extra.append((clothed & ~body).sum() / body.sum())
    assert max(extra) > 0.05


def test_shards_resume_and_refused_photos_leave_a_marker(tmp_path):
    from bodydance.training.pairs import load_shards, write_shards

    assert write_shards([5], tmp_path, poses_per_scene=2, resolution=N) == 1
    assert write_shards([5], tmp_path, poses_per_scene=2, resolution=N) == 0  # already made: skipped
    (shard,) = load_shards(tmp_path)
    assert shard["frame"].shape == (2, N, N, 3) and shard["truth"].shape == (2, N, N, 3)
    assert shard["flow"].shape == (2, 2, N, N) and shard["flow"].dtype == np.float16
    assert shard["covisible"].sum() <= shard["truth_person"].sum()
    # the deterministic frame is the stand-in's own output: close to the truth where the photo shows the surface
    person = shard["truth_person"] & shard["covisible"]
    error = np.abs(shard["frame"].astype(float) - shard["truth"].astype(float)).mean(-1)
    assert np.median(error[person]) < 40
    # each pose's next dance frame, and the exact flow between them both ways, shown points on the person
    assert shard["next_frame"].shape == shard["frame"].shape and shard["next_flow"].shape == shard["flow"].shape
    for (flow, shown), person in ((("flow_to_next", "shown_to_next"), "truth_person"),
                                  (("flow_from_next", "shown_from_next"), "next_truth_person")):
        assert shard[flow].shape == (2, N, N, 2) and shard[flow].dtype == np.float16
        assert shard[shown].any() and not (shard[shown] & ~shard[person]).any()
    np.savez(tmp_path / "seed_9.npz", refused=np.int64(9))
    assert len(load_shards(tmp_path)) == 1
