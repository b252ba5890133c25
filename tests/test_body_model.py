"""The open SMPL-format body and the SMPL loading path."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bodydance.body import BodyModel, load_open_body_arrays
from bodydance.skeleton import REST_JOINTS
from bodydance_client.contract import JOINT_NAMES, JOINT_PARENTS, PART_NAMES

J = {n: i for i, n in enumerate(JOINT_NAMES)}


@pytest.fixture(scope="module")
def body():
    return BodyModel.open_body()


@pytest.fixture(scope="module")
def arrays():
    return load_open_body_arrays()


def _pose(**joints):
    pose = torch.zeros(1, 24, 3)
    for name, rotvec in joints.items():
        pose[0, J[name]] = torch.tensor(rotvec, dtype=torch.float32)
    return pose


def test_asset_is_smpl_format_and_human(arrays):
    v = arrays["v_template"]
    assert v.shape[1] == 3 and arrays["faces"].max() < len(v)
    assert arrays["weights"].shape == (len(v), 24)
    assert np.allclose(arrays["weights"].sum(1), 1.0, atol=1e-5)
    assert np.allclose(arrays["J_regressor"].sum(1), 1.0, atol=1e-4)
    assert list(arrays["kintree_table"][0]) == list(JOINT_PARENTS)
    assert set(np.unique(arrays["part_labels"])) == set(range(1, len(PART_NAMES)))
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.5 < height < 1.95
    joints = arrays["J_regressor"] @ v
    assert joints[J["head"], 1] > joints[J["pelvis"], 1] + 0.4
    assert joints[J["left_wrist"], 0] > 0.5 and joints[J["right_wrist"], 0] < -0.5  # T-pose, left at +X
    assert abs(joints[J["left_wrist"], 1] - joints[J["left_shoulder"], 1]) < 0.05  # arms horizontal
    assert joints[J["left_ankle"], 1] < v[:, 1].min() + 0.15  # ankles near the soles
    assert "CC0" in str(arrays["attribution"])


def test_rest_pose_skins_to_the_template(body, arrays):
    verts, joints = body(torch.zeros(1, 10), torch.zeros(1, 24, 3), torch.zeros(1, 3))
    assert np.abs(verts[0].numpy() - arrays["v_template"]).max() < 1e-5
    assert np.abs(joints[0].numpy() - REST_JOINTS).max() < 1e-5


def test_bending_an_elbow_moves_the_forearm_only(body, arrays):
    rest, _ = body(torch.zeros(1, 10), torch.zeros(1, 24, 3), torch.zeros(1, 3))
    bent, joints = body(torch.zeros(1, 10), _pose(left_elbow=(0, -np.pi / 2, 0)), torch.zeros(1, 3))
    moved = np.linalg.norm((bent - rest)[0].numpy(), axis=1)
    dominant = arrays["weights"].argmax(1)
    assert np.median(moved[dominant == J["left_wrist"]]) > 0.15
    assert moved[np.isin(dominant, [J["spine2"], J["pelvis"], J["right_elbow"]])].max() < 1e-4
    # the forearm now points forwards (+Z), 90 degrees from the upper arm
    forearm = (joints[0, J["left_wrist"]] - joints[0, J["left_elbow"]]).numpy()
    assert forearm[2] > 0.9 * np.linalg.norm(forearm)


def test_some_shape_component_changes_height_monotonically(body):
    heights = {}
    for k in range(3):
        hs = []
        for value in (-2.0, 0.0, 2.0):
            betas = torch.zeros(1, 10)
            betas[0, k] = value
            verts, _ = body(betas, torch.zeros(1, 24, 3), torch.zeros(1, 3))
            hs.append(float(verts[0, :, 1].max() - verts[0, :, 1].min()))
        heights[k] = hs
    assert any(abs(h[2] - h[0]) > 0.05 and (np.diff(h) > 0).all() or (np.diff(h) < 0).all() for h in heights.values())


def _tiny_smpl(path, rng):
    """A small SMPL-format file: 300 vertices scattered near the open body's joints."""
    joints = REST_JOINTS.astype(np.float64)
    owner = rng.integers(0, 24, 300)
    v = joints[owner] + rng.normal(0, 0.03, (300, 3))
    weights = np.zeros((300, 24))
    weights[np.arange(300), owner] = 0.7
    weights[np.arange(300), np.asarray(JOINT_PARENTS)[owner].clip(0)] += 0.3
    regressor = np.zeros((24, 300))
    for j in range(24):
        regressor[j, owner == j] = 1.0 / max((owner == j).sum(), 1)
    np.savez(path, v_template=v, shapedirs=rng.normal(0, 0.01, (300, 3, 10)), posedirs=rng.normal(0, 0.001, (300, 3, 207)),
             J_regressor=regressor, weights=weights, kintree_table=np.stack([np.asarray(JOINT_PARENTS), np.arange(24)]),
             f=rng.integers(0, 300, (100, 3)))
    return dict(v=v, weights=weights, regressor=regressor)


def test_smpl_files_load_through_smplx_and_skin_like_smplx(tmp_path):
    import smplx

    rng = np.random.default_rng(0)
    _tiny_smpl(tmp_path / "SMPL_NEUTRAL.npz", rng)
    ours = BodyModel.from_smpl(tmp_path / "SMPL_NEUTRAL.npz")
    assert ours.has_posedirs
    betas = torch.tensor(rng.normal(0, 1, (2, 10)), dtype=torch.float32)
    pose = torch.tensor(rng.normal(0, 0.4, (2, 24, 3)), dtype=torch.float32)
    transl = torch.tensor(rng.normal(0, 0.1, (2, 3)), dtype=torch.float32)
    verts, joints = ours(betas, pose, transl)
    with np.load(tmp_path / "SMPL_NEUTRAL.npz") as data:
        struct = smplx.utils.Struct(**{k: data[k] for k in data.files})
    keypoints = ["nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe",
                 "RHeel"] + [side + tip for side in "lr" for tip in ("thumb", "index", "middle", "ring", "pinky")]
    # smplx appends keypoint joints at SMPL's own vertex ids; point them inside the tiny mesh.
    reference = smplx.SMPL(model_path=str(tmp_path), data_struct=struct, batch_size=2,
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
    rng = np.random.default_rng(1)
    feeds = {"betas": rng.normal(0, 1, (3, 10)).astype(np.float32),
             "pose": rng.normal(0, 0.4, (3, 24, 3)).astype(np.float32),
             "translation": rng.normal(0, 0.2, (3, 3)).astype(np.float32)}
    onnx_verts, _ = ort.InferenceSession(str(path)).run(None, feeds)
    torch_verts, _ = body(*(torch.from_numpy(v) for v in feeds.values()))
    assert np.abs(onnx_verts - torch_verts.detach().numpy()).max() < 1e-4
