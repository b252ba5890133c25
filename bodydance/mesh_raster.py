"""Triangle-mesh z-buffer as pure tensor ops: static shapes, no loops over data, exports to ONNX.

Each triangle tests the pixel centres of a fixed ``K x K`` window anchored at
the top-left of its bounding box. The nearest surface wins through
``ScatterElements(reduction="max")`` (opset 18, chained over groups of
triangles) of int32 keys that hold the depth (16 bits, relative to the body's
own depth range) above the face index (15 bits), so one pass keeps both.
Triangles are grouped by size, each group with the smallest window that
covers its largest member at ``max_scale`` (the camera scale, NDC per metre,
up to which the raster is exact; beyond it the largest triangles lose pixels
on their far side). ONNX Runtime runs the scatters natively; TensorRT runs
scatter reductions through its ScatterElements plugin (int32 data, int64
indices).

Tensor contract (``B`` batch, ``V`` vertices, ``N`` resolution, ``P = N * N``):

* ``points`` ``[B,V,3]``: column px, row px (pixel centres at integers, see
  :func:`to_pixels`), depth Z in metres (+Z towards the camera).
* :class:`MeshRaster`: ``depth`` ``[B,P]`` m (``BACKGROUND_DEPTH`` where empty),
  ``face`` ``[B,P]`` int64 (-1 where empty, else the index into ``faces``),
  ``barycentric`` ``[B,P,3]`` (weights of the face's three corners at the pixel centre).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

BACKGROUND_DEPTH = -1.0e3  # metres; anything on the body is in front of this
FACE_BITS = 15  # z-buffer key: depth level above the face index, in an int32
FACE_LIMIT = 1 << FACE_BITS
DEPTH_LEVELS = (1 << 16) - 1


def to_pixels(vertices: torch.Tensor, camera: torch.Tensor, resolution: int) -> torch.Tensor:
    """Weak-perspective projection: ``[B,V,3]`` m + camera ``[B,3]`` (s, tx, ty) -> ``[B,V,3]`` (col px, row px, Z m)."""
    s, tx, ty = camera[:, None, 0], camera[:, None, 1], camera[:, None, 2]
    half = resolution / 2.0
    col = (s * vertices[..., 0] + tx + 1.0) * half - 0.5
    row = (-s * vertices[..., 1] + ty + 1.0) * half - 0.5
    return torch.stack([col, row, vertices[..., 2]], dim=-1)


@dataclasses.dataclass
class MeshRaster:
    depth: torch.Tensor  # [B, P] m
    face: torch.Tensor  # [B, P] int64, -1 where empty
    barycentric: torch.Tensor  # [B, P, 3]

    @property
    def covered(self) -> torch.Tensor:
        return self.face >= 0


def window_sizes(faces: np.ndarray, rest_vertices: np.ndarray, resolution: int, max_scale: float,
                 stretch=1.0) -> np.ndarray:
    """``[F]`` window side (pixels) each triangle needs at ``max_scale`` NDC/m.

    ``stretch`` (scalar or ``[F]``) is how much longer than at rest a triangle's
    edges may become once posed (skinning stretches triangles that span a bent
    joint). A projected edge never exceeds the 3D edge times the scale, and an
    interval of length ``e`` holds at most ``floor(e) + 1`` pixel centres.
    """
    corners = rest_vertices[faces]  # [F, 3, 3]
    longest = np.max(np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=-1), axis=1)
    extent_px = longest * np.asarray(stretch) * max_scale * resolution / 2.0
    return np.floor(extent_px).astype(np.int64) + 1


def group_windows(sizes: np.ndarray, max_groups: int = 10) -> np.ndarray:
    """Round each window up to one of at most ``max_groups`` sides, keeping the total tested pixels low.

    Each group costs a few graph nodes, and each rounded-up triangle tests pixels
    it cannot cover; the sides are picked greedily from the distinct sizes.
    """
    distinct = np.unique(sizes)
    chosen = [int(distinct[-1])]  # the largest must stay
    def cost(sides):
        ladder = np.sort(np.asarray(sides))
        return int((ladder[np.searchsorted(ladder, sizes)] ** 2).sum())
    while len(chosen) < min(max_groups, len(distinct)):
        best = min((s for s in distinct if s not in chosen), key=lambda s: cost(chosen + [int(s)]))
        chosen.append(int(best))
    ladder = np.sort(np.asarray(chosen))
    return ladder[np.searchsorted(ladder, sizes)]


class _ScatterMax(torch.autograd.Function):
    """``base.scatter_reduce(1, index, values, "amax")``, exported as one ScatterElements(reduction="max").

    (PyTorch's own export wraps it in If nodes for a rank check, which cost 3 ms a frame in ONNX Runtime.)
    """

    @staticmethod
    def forward(ctx, base, index, values):
        return base.scatter_reduce(1, index, values, reduce="amax", include_self=True)

    @staticmethod
    def symbolic(g, base, index, values):
        return g.op("ScatterElements", base, index, values, axis_i=1, reduction_s="max")


class MeshRasterizer(torch.nn.Module):
    """forward(points ``[B,V,3]`` (col px, row px, Z m)) -> :class:`MeshRaster`.

    ``faces`` ``[F,3]`` int and ``rest_vertices`` ``[V,3]`` m (to size the windows)
    are fixed at construction; ``max_scale`` is the camera scale (NDC per metre)
    and ``stretch`` the posed-to-rest edge ratio (see :func:`window_sizes`) the
    windows are sized for.
    """

    def __init__(self, faces: np.ndarray, rest_vertices: np.ndarray, resolution: int, max_scale: float,
                 stretch=1.0):
        super().__init__()
        self.resolution = resolution
        sides = group_windows(window_sizes(np.asarray(faces), np.asarray(rest_vertices, np.float64), resolution,
                                           max_scale, stretch))
        order = np.argsort(sides, kind="stable")
        # Faces are kept grouped by window side; `face_order` maps back to the caller's indices.
        self.register_buffer("face_order", torch.from_numpy(order.astype(np.int64)))
        self.register_buffer("faces", torch.from_numpy(np.asarray(faces, np.int64)[order]))
        self.pad = int(sides.max())
        self.groups = []  # (first face, face count, side)
        for side in np.unique(sides):
            members = np.nonzero(sides[order] == side)[0]
            self.groups.append((int(members[0]), len(members), int(side)))
        # The z-buffer is a padded canvas, flattened, with room to spare so that no scatter has more
        # updates than the buffer has entries: TensorRT's ONNX parser has asserted that indices are
        # no larger than the data (NVIDIA/TensorRT#3650). One scatter per group keeps the graph small.
        self.canvas_side = resolution + 2 * self.pad
        self.buffer_size = max(self.canvas_side ** 2, max(count * side * side for _, count, side in self.groups))
        if len(faces) > FACE_LIMIT:
            raise ValueError(f"{len(faces)} faces: the z-buffer keys hold at most {FACE_LIMIT}")

    @staticmethod
    def _offsets(side: int, like: torch.Tensor):
        """A window's pixel offsets ``[1,1,K*K]`` (dx, dy), as floats."""
        steps = torch.arange(side, dtype=like.dtype, device=like.device)
        dy, dx = torch.meshgrid(steps, steps, indexing="ij")
        return dx.reshape(1, 1, -1), dy.reshape(1, 1, -1)

    def plane_coefficients(self, points: torch.Tensor):
        """-> ``[B,F,9]`` per face: w0 and w1 (barycentric) and Z as ``a + b * col + c * row``;
        and the corners' pixel positions ``[B,F,3,2]``."""
        tri = points[:, self.faces]  # [B, F, 3 corners, 3]
        x0, y0, z0 = tri[..., 0, 0], tri[..., 0, 1], tri[..., 0, 2]
        x1, y1, z1 = tri[..., 1, 0], tri[..., 1, 1], tri[..., 1, 2]
        x2, y2, z2 = tri[..., 2, 0], tri[..., 2, 1], tri[..., 2, 2]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        # Degenerate (edge-on) triangles get coefficients that make every weight negative.
        flat = area.abs() < 1e-6
        inv = torch.where(flat, torch.zeros_like(area), 1.0 / torch.where(flat, torch.ones_like(area), area))
        never = flat.to(points.dtype) * -1.0
        w0 = ((x1 * y2 - x2 * y1) * inv + never, (y1 - y2) * inv, (x2 - x1) * inv)
        w1 = ((x2 * y0 - x0 * y2) * inv + never, (y2 - y0) * inv, (x0 - x2) * inv)
        dz0, dz1 = z0 - z2, z1 - z2
        z = (z2 + w0[0] * dz0 + w1[0] * dz1, w0[1] * dz0 + w1[1] * dz1, w0[2] * dz0 + w1[2] * dz1)
        corner_xy = tri[..., :2]
        return torch.stack(list(w0) + list(w1) + list(z), dim=-1), corner_xy

    def forward(self, points: torch.Tensor) -> MeshRaster:
        n, pad, side_len = self.resolution, self.pad, self.canvas_side  # drawn on a padded canvas, then cropped
        batch = points.shape[0]
        coeffs, corner_xy = self.plane_coefficients(points)  # [B, F, 9], [B, F, 3, 2]
        # Each window's top-left pixel centre, held on the canvas; a window moved this way tests pixels
        # its face does not cover, which the exact inside test rejects.
        origin = torch.ceil(corner_xy.amin(dim=2))  # [B, F, 2]
        # NaN (a corrupt camera or pose) must not become an out-of-range index: such a body draws nothing.
        origin = torch.where(torch.isnan(origin), torch.full_like(origin, -pad), origin).clamp(-pad, n)
        # Depth levels span this item's own depth range: 16 bits over a body's metre or so is 0.02 mm.
        # (In FP32 even in the FP16 check: 65535 levels pass FP16's range.)
        z_min = points[..., 2].amin(1)[:, None].float()  # [B, 1]
        z_step = (points[..., 2].amax(1)[:, None].float() - z_min).clamp_min(1e-6) / DEPTH_LEVELS
        # Planes re-anchored at each window's origin (w = a + b * dx + c * dy), the depth plane in levels,
        # and each window's first canvas index: per tested pixel, only the offsets remain. One table,
        # sliced once per group, keeps the exported graph small (ORT pays per node).
        ox, oy = origin[..., 0], origin[..., 1]  # [B, F]
        anchored = [coeffs[..., 3 * k] + coeffs[..., 3 * k + 1] * ox + coeffs[..., 3 * k + 2] * oy for k in range(3)]
        table = torch.stack([anchored[0], coeffs[..., 1], coeffs[..., 2], anchored[1], coeffs[..., 4], coeffs[..., 5],
                             (anchored[2].float() - z_min) / z_step, coeffs[..., 7].float() / z_step,
                             coeffs[..., 8].float() / z_step], dim=-1)  # [B, F, 9]
        base = (oy + pad).to(torch.int64) * side_len + (ox + pad).to(torch.int64)  # [B, F]
        best = torch.full((batch, self.buffer_size), -1, dtype=torch.int32, device=points.device)
        for first, count, side in self.groups:
            faces = slice(first, first + count)
            dx, dy = self._offsets(side, points)  # [1, 1, K*K]
            w0a, w0x, w0y, w1a, w1x, w1y, za, zx, zy = table[:, faces].split(1, dim=-1)  # each [B, f, 1]
            w0 = w0a + w0x * dx + w0y * dy  # [B, f, K*K]
            w1 = w1a + w1x * dx + w1y * dy
            inside = (w0 >= 0) & (w1 >= 0) & (w0 + w1 <= 1)
            level = (za + zx * dx + zy * dy).clamp(0, DEPTH_LEVELS).to(torch.int32)
            # the face index fills the key's low bits
            face_id = torch.arange(first, first + count, dtype=torch.int32, device=points.device)[None, :, None]
            key = torch.where(inside, level * FACE_LIMIT + face_id, torch.full_like(level, -1))
            step = torch.arange(side, device=points.device)
            within = (step[:, None] * side_len + step[None, :]).reshape(1, 1, -1)  # [1, 1, K*K] canvas offsets
            pixels = base[:, faces, None] + within
            best = _ScatterMax.apply(best, pixels.flatten(1), key.flatten(1))
        best = best[:, :side_len * side_len]
        best = best.reshape(batch, side_len, side_len)[:, pad:pad + n, pad:pad + n].reshape(batch, n * n)
        face = torch.where(best >= 0, best % FACE_LIMIT, best).to(torch.int64)  # [B, P] index into grouped faces
        covered = face >= 0
        safe = face.clamp_min(0)
        c = coeffs.reshape(-1, 9)[safe + torch.arange(batch, device=safe.device)[:, None] * coeffs.shape[1]]
        centres = torch.arange(n, dtype=points.dtype, device=points.device)
        col = centres.repeat(n)[None]  # [1, P]
        row = centres.repeat_interleave(n)[None]
        w0 = c[..., 0] + c[..., 1] * col + c[..., 2] * row
        w1 = c[..., 3] + c[..., 4] * col + c[..., 5] * row
        barycentric = torch.stack([w0, w1, 1.0 - w0 - w1], dim=-1) * covered[..., None].to(points.dtype)
        z = c[..., 6] + c[..., 7] * col + c[..., 8] * row
        depth = torch.where(covered, z, torch.full_like(z, BACKGROUND_DEPTH))
        original = torch.where(covered, self.face_order[safe], torch.full_like(face, -1))
        return MeshRaster(depth, original, barycentric)
