"""The tensor z-buffer against known answers and against the plain numpy reference."""

import io

import numpy as np
import onnxruntime as ort
import torch

from bodydance.mesh_raster import BACKGROUND_DEPTH, MeshRasterizer, group_windows, to_pixels, window_sizes
from bodydance.reference_render import rasterize

N = 32


def _raster(vertices, faces, camera, max_scale=1.0):
    rasterizer = MeshRasterizer(np.asarray(faces), np.asarray(vertices), N, max_scale)
    with torch.no_grad():
        points = to_pixels(torch.tensor(vertices, dtype=torch.float32)[None], torch.tensor([camera]), N)
        return rasterizer(points)


def test_the_nearer_of_two_overlapping_triangles_wins():
    # metres, camera s=1: NDC = metres; the second triangle is 0.5 m nearer the camera (+Z)
    vertices = [[-0.8, -0.8, 0.0], [0.8, -0.8, 0.0], [0.0, 0.8, 0.0],
                [-0.4, -0.2, 0.5], [0.4, -0.2, 0.5], [0.0, 0.3, 0.5]]
    out = _raster(vertices, [[0, 1, 2], [3, 4, 5]], (1.0, 0.0, 0.0))
    face = out.face[0].reshape(N, N).numpy()
    depth = out.depth[0].reshape(N, N).numpy()
    centre = (N // 2, N // 2)  # row, col: NDC (1/32, 1/32) -> y = -1/32 m, inside both
    assert face[centre] == 1 and abs(depth[centre] - 0.5) < 1e-5
    assert face[N - 4, N // 2] == 0 and abs(depth[N - 4, N // 2]) < 1e-5  # only the far one
    assert face[0, 0] == -1 and depth[0, 0] == BACKGROUND_DEPTH
    # barycentric weights rebuild each covered pixel centre from its triangle's corners
    corners = to_pixels(torch.tensor(vertices)[None], torch.tensor([[1.0, 0.0, 0.0]]), N)[0, :, :2].numpy()
    tris = np.asarray([[0, 1, 2], [3, 4, 5]])
    rows, cols = np.nonzero(face >= 0)
    bary = out.barycentric[0].reshape(N, N, 3).numpy()[rows, cols]
    rebuilt = np.einsum("kc,kcd->kd", bary, corners[tris[face[rows, cols]]])
    assert np.abs(rebuilt - np.stack([cols, rows], -1)).max() < 1e-3
    assert (bary >= -1e-6).all()


def test_random_triangles_match_the_reference_rasteriser():
    rng = np.random.default_rng(0)
    centres = rng.uniform(-0.9, 0.9, (60, 1, 3))
    vertices = (centres + rng.normal(0.0, 0.12, (60, 3, 3))).reshape(-1, 3)
    faces = np.arange(180).reshape(60, 3)
    out = _raster(vertices, faces, (1.0, 0.0, 0.0))
    reference = rasterize(vertices, faces, (1.0, 0.0, 0.0), N)
    ours = out.face[0].reshape(N, N).numpy()
    assert ((ours >= 0) == reference.silhouette).all()
    both = reference.silhouette
    assert (ours[both] == reference.face[both]).mean() > 0.99  # differences only where depths tie
    assert np.abs(out.depth[0].reshape(N, N).numpy()[both] - reference.depth[both]).max() < 1e-4


def test_windows_cover_the_largest_triangle_at_the_stated_scale():
    # one long thin triangle, 1.5 m across: at scale 0.6 it spans 0.9 NDC = 14.4 px
    vertices = np.asarray([[-0.75, 0.0, 0.0], [0.75, 0.1, 0.0], [0.7, -0.3, 0.0]])
    sides = window_sizes(np.asarray([[0, 1, 2]]), vertices, N, max_scale=0.6)
    assert sides[0] >= 15
    out = _raster(vertices, [[0, 1, 2]], (0.6, 0.0, 0.0), max_scale=0.6)
    reference = rasterize(vertices, np.asarray([[0, 1, 2]]), (0.6, 0.0, 0.0), N)
    assert ((out.face[0].reshape(N, N).numpy() >= 0) == reference.silhouette).all()


def test_grouping_only_rounds_windows_up():
    sizes = np.asarray([1, 2, 2, 3, 5, 8, 8, 13, 21])
    grouped = group_windows(sizes, max_groups=4)
    assert (grouped >= sizes).all() and len(np.unique(grouped)) <= 4 and grouped.max() == 21


def test_onnx_runtime_draws_the_same_z_buffer():
    rng = np.random.default_rng(1)
    vertices = (rng.uniform(-0.9, 0.9, (40, 1, 3)) + rng.normal(0.0, 0.1, (40, 3, 3))).reshape(-1, 3)
    faces = np.arange(120).reshape(40, 3)
    rasterizer = MeshRasterizer(faces, vertices, N, 1.0)

    class FaceAndDepth(torch.nn.Module):
        def forward(self, points):
            out = rasterizer(points)
            return out.face, out.depth

    points = to_pixels(torch.tensor(vertices, dtype=torch.float32)[None].repeat(2, 1, 1),
                       torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.1, -0.1]]), N)
    buffer = io.BytesIO()
    torch.onnx.export(FaceAndDepth(), (points,), buffer, input_names=["points"], opset_version=18, dynamo=False,
                      dynamic_axes={"points": {0: "batch"}})
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    face, depth = session.run(None, {"points": points.numpy()})
    with torch.no_grad():
        expected_face, expected_depth = FaceAndDepth()(points)
    assert (face == expected_face.numpy()).mean() > 0.999
    assert np.abs(depth - expected_depth.numpy()).max() < 1e-4
