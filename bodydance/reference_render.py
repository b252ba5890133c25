"""Exact reference rasteriser for the body mesh, written plainly in numpy (tests, benchmarks, overlays).

Orthographic z-buffer under the contract's weak-perspective camera: for every
pixel centre inside a triangle, the barycentric depth decides; the nearest
surface (largest Z, +Z towards the camera) wins. Slow (a Python loop over
triangles) but obviously right, which is its job: the per-frame tensor
geometry is checked against it, and the synthetic benchmark renders its
ground truth with it.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class MeshRender:
    depth: np.ndarray  # [N, N] float, -inf where empty
    face: np.ndarray  # [N, N] int, -1 where empty
    barycentric: np.ndarray  # [N, N, 3]

    @property
    def silhouette(self) -> np.ndarray:
        return self.face >= 0


def to_pixels(vertices: np.ndarray, camera, resolution: int) -> np.ndarray:
    """``[V,3]`` metres -> ``[V,3]`` (column px, row px, Z m) for pixel-centre sampling."""
    s, tx, ty = [float(c) for c in camera]
    x = (s * vertices[:, 0] + tx + 1.0) * resolution / 2.0 - 0.5
    y = (-s * vertices[:, 1] + ty + 1.0) * resolution / 2.0 - 0.5
    return np.stack([x, y, vertices[:, 2]], axis=-1)


def rasterize(vertices: np.ndarray, faces: np.ndarray, camera, resolution: int) -> MeshRender:
    n = resolution
    depth = np.full((n, n), -np.inf)
    face_id = np.full((n, n), -1, dtype=np.int64)
    bary = np.zeros((n, n, 3))
    p = to_pixels(np.asarray(vertices, np.float64), camera, n)
    tri = p[np.asarray(faces)]  # [F, 3, 3]
    lo = np.clip(np.ceil(tri[:, :, :2].min(1)).astype(int), 0, n)
    hi = np.clip(np.floor(tri[:, :, :2].max(1)).astype(int) + 1, 0, n)
    for f in np.nonzero((hi[:, 0] > lo[:, 0]) & (hi[:, 1] > lo[:, 1]))[0]:
        (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = tri[f]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area) < 1e-12:
            continue
        ys, xs = np.mgrid[lo[f, 1]:hi[f, 1], lo[f, 0]:hi[f, 0]]
        w0 = ((x1 - xs) * (y2 - ys) - (x2 - xs) * (y1 - ys)) / area
        w1 = ((x2 - xs) * (y0 - ys) - (x0 - xs) * (y2 - ys)) / area
        w2 = 1.0 - w0 - w1
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        if not inside.any():
            continue
        z = w0 * z0 + w1 * z1 + w2 * z2
        rows, cols = ys[inside], xs[inside]
        closer = z[inside] > depth[rows, cols]
        rows, cols = rows[closer], cols[closer]
        depth[rows, cols] = z[inside][closer]
        face_id[rows, cols] = f
        bary[rows, cols] = np.stack([w0, w1, w2], -1)[inside][closer]
    return MeshRender(depth, face_id, bary)


def part_image(render: MeshRender, faces: np.ndarray, vertex_parts: np.ndarray) -> np.ndarray:
    """``[N,N]`` part label (0 background) of the vertex nearest in barycentric terms."""
    labels = np.zeros(render.face.shape, dtype=np.int32)
    hit = render.silhouette
    corners = np.asarray(faces)[render.face[hit]]  # [K, 3]
    nearest = corners[np.arange(len(corners)), render.barycentric[hit].argmax(-1)]
    labels[hit] = vertex_parts[nearest]
    return labels


def interpolate(render: MeshRender, faces: np.ndarray, values: np.ndarray, background=0.0) -> np.ndarray:
    """Barycentric interpolation of per-vertex ``values`` ``[V, C]`` -> ``[N, N, C]``."""
    out = np.full(render.face.shape + values.shape[1:], background, dtype=np.float64)
    hit = render.silhouette
    corners = np.asarray(faces)[render.face[hit]]
    out[hit] = np.einsum("kc,kcd->kd", render.barycentric[hit], values[corners])
    return out
