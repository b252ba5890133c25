"""Correspondence flow, visibility and parts on cases whose answer is known."""

import numpy as np
import torch

from bodydance.geometry import CorrespondenceGeometry, grow_labels
from bodydance.skeleton import REST_JOINTS, forward_kinematics, project
from bodydance_client.contract import PART_NAMES

N = 128
CAMERA = torch.tensor([[0.9, 0.0, 0.05]])


def _run(source_pose, target_pose, translation=(0.0, 0.0, 0.0)):
    geometry = CorrespondenceGeometry(N)
    with torch.no_grad():
        betas = torch.zeros(1, 10)
        depth = geometry.source_depth(betas, source_pose, CAMERA)
        return geometry(betas, source_pose, CAMERA, depth, target_pose, torch.tensor([translation]))


def _pixel_grid():
    centres = (np.arange(N) * 2 + 1) / N - 1
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    return xx, yy


def test_same_pose_maps_each_pixel_to_itself_and_is_visible():
    pose = torch.zeros(1, 24, 3)
    flow, visible, parts = _run(pose, pose)
    body = parts[0, 0].numpy() > 0
    xx, yy = _pixel_grid()
    assert body.mean() > 0.05
    assert np.abs(flow[0, 0].numpy()[body] - xx[body]).max() < 1e-4
    assert np.abs(flow[0, 1].numpy()[body] - yy[body]).max() < 1e-4
    assert visible[0, 0].numpy()[body].mean() > 0.99


def test_translation_shifts_the_flow_by_the_projected_offset():
    pose = torch.zeros(1, 24, 3)
    flow, visible, parts = _run(pose, pose, translation=(0.2, 0.0, 0.0))
    body = parts[0, 0].numpy() > 0
    xx, _ = _pixel_grid()
    # the dancer moved 0.2 m to image right: each target pixel comes from 0.9 * 0.2 NDC further left
    assert np.allclose(flow[0, 0].numpy()[body], xx[body] - 0.9 * 0.2, atol=1e-4)


def test_turning_around_hides_the_front():
    pose = torch.zeros(1, 24, 3)
    turned = pose.clone()
    turned[0, 0, 1] = np.pi  # global rotation about +Y: the back faces the camera
    _, visible, parts = _run(pose, turned)
    body = parts[0, 0].numpy() > 0
    assert visible[0, 0].numpy()[body].mean() < 0.1


def test_parts_follow_the_skeleton():
    pose = torch.zeros(1, 24, 3)
    _, _, parts = _run(pose, pose)
    joints, _ = forward_kinematics(np.zeros((24, 3), np.float32), REST_JOINTS)
    ndc = project(joints, CAMERA[0].numpy())
    def label_at(joint):
        col, row = ((ndc[joint] + 1) / 2 * N).astype(int)
        return PART_NAMES[int(parts[0, 0, row, col])]
    assert label_at(15) == "head"
    assert label_at(3) == "torso"
    assert label_at(4) in ("thigh", "shin_foot")  # the knee sits where the two meet
    assert label_at(20) in ("forearm", "hand")


def test_lowering_an_arm_moves_its_pixels():
    pose = torch.zeros(1, 24, 3)
    lowered = pose.clone()
    lowered[0, 16, 2] = -1.3  # left shoulder rotated down about +Z
    _, _, before = _run(pose, pose)
    _, _, after = _run(lowered, lowered)
    upper_arm = PART_NAMES.index("upper_arm")
    left_half = slice(N // 2, N)  # the body's left is image right
    rows_before = np.nonzero((before[0, 0, :, left_half] == upper_arm).numpy())[0]
    rows_after = np.nonzero((after[0, 0, :, left_half] == upper_arm).numpy())[0]
    assert rows_after.mean() > rows_before.mean() + 3  # lower in the image


def test_grow_labels_keeps_labels_and_respects_the_allowed_region():
    labels = torch.zeros(1, 1, 9, 9, dtype=torch.int32)
    labels[0, 0, 4, 4] = 3
    allowed = torch.zeros(1, 1, 9, 9, dtype=torch.bool)
    allowed[0, 0, 4, :] = True
    grown = grow_labels(labels, 8, steps=2, allowed=allowed)[0, 0]
    assert grown[4, 2:7].tolist() == [3] * 5
    assert grown[4, 1] == 0 and grown[3, 4] == 0


def test_tensor_geometry_matches_the_exact_mesh_rasteriser():
    """The per-frame stand-in surface vs the open body's mesh drawn by the plain z-buffer.

    Measured on these poses: silhouette IoU 0.82, part agreement 0.88 (the
    capsules are thinner at the hips and rounder at the head than the mesh).
    """
    from bodydance.body import BodyModel, load_open_body_arrays
    from bodydance.reference_render import part_image, rasterize
    from bodydance_client.templates import load_bundled

    body, arrays = BodyModel.open_body(), load_open_body_arrays()
    template = load_bundled("wave")
    geometry = CorrespondenceGeometry(N)
    for frame in (0, 45, 90):
        pose = torch.from_numpy(template.poses[frame][None])
        shift = torch.from_numpy(template.translations[frame][None])
        with torch.no_grad():
            vertices, _ = body(torch.zeros(1, 10), pose, shift)
            rest = torch.zeros(1, 24, 3)
            depth = geometry.source_depth(torch.zeros(1, 10), rest, CAMERA)
            _, _, parts = geometry(torch.zeros(1, 10), rest, CAMERA, depth, pose, shift)
        exact = part_image(rasterize(vertices[0].numpy(), arrays["faces"], CAMERA[0].numpy(), N),
                           arrays["faces"], arrays["part_labels"])
        ours = parts[0, 0].numpy()
        both = (exact > 0) & (ours > 0)
        iou = both.sum() / ((exact > 0) | (ours > 0)).sum()
        assert iou > 0.75, f"frame {frame}: silhouette IoU {iou:.3f}"
        assert (exact[both] == ours[both]).mean() > 0.8, f"frame {frame}: part agreement"
