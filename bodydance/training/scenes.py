"""Synthetic scenes with known truth: clothed, textured open bodies on real backgrounds, drawn in any pose.

Everything a scene is made of ships inside installed packages: the committed open body, photos from
scikit-image's and matplotlib's data folders (backgrounds, and crops as clothing prints). Nothing is
downloaded. A scene is fixed by its seed; :data:`HELD_OUT_SEED` and above are the held-out scenes,
never used in training (:func:`training_seeds`).

What the bare fitted body cannot explain is put in on purpose: hair with volume behind and above the
head, and loose clothes standing off the torso, arms and thighs. Both are offsets along the rest
body's normals, skinned with the body, so in any pose the truth knows where they went.

Shapes: images ``[N,N,3]`` uint8, masks ``[N,N]`` bool; poses ``[24,3]`` rad (SMPL order),
translations ``[3]`` m, cameras ``(s NDC/m, tx, ty)``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import List, Sequence, Tuple

import numpy as np
import torch

from bodydance.body import BodyModel, load_open_body_arrays
from bodydance.geometry import skinning_stretch
from bodydance.mesh_raster import MeshRasterizer, to_pixels
from bodydance_client import contract as C
from bodydance_client.templates import bundled_templates, load_bundled

HELD_OUT_SEED = 1_000_000
J = {n: i for i, n in enumerate(C.JOINT_NAMES)}
PART = {n: i for i, n in enumerate(C.PART_NAMES)}
# Scikit-image photos without a person in them: backgrounds. The ones with people are clothing prints.
# (Frames of the Sports2D video are not used: that video is the real-footage benchmark's held-out truth.)
BACKGROUND_PHOTOS = ("coffee", "chelsea", "rocket", "stereo_motorcycle", "hubble_deep_field", "retina",
                     "brick", "grass", "gravel", "horse", "coins", "immunohistochemistry")
PRINT_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "brick", "grass", "colorwheel")


def training_seeds(count: int, start: int = 0) -> range:
    """Scene seeds for training: below :data:`HELD_OUT_SEED`."""
    if start + count > HELD_OUT_SEED:
        raise ValueError(f"training seeds must stay below the held-out ones ({HELD_OUT_SEED})")
    return range(start, start + count)


def held_out_seeds(count: int) -> range:
    return range(HELD_OUT_SEED, HELD_OUT_SEED + count)


@functools.lru_cache(maxsize=None)
def package_photo(name: str) -> np.ndarray:
    """An RGB uint8 photo that ships in scikit-image (or matplotlib's ``grace_hopper``)."""
    if name == "grace_hopper":
        import matplotlib.cbook
        from PIL import Image

        return np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    import skimage.data

    image = getattr(skimage.data, name)()
    image = np.asarray(image[0] if isinstance(image, tuple) else image)  # stereo_motorcycle: (left, right, disparity)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    if image.dtype != np.uint8:
        image = (255 * (image.astype(np.float64) / max(float(image.max()), 1e-9))).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3])


def _crop(photo: np.ndarray, rng: np.random.Generator, size: int, shortest: float) -> np.ndarray:
    """A random square crop (side at least ``shortest`` of the photo's shorter side) resized to ``size``."""
    import cv2

    h, w = photo.shape[:2]
    side = int(rng.uniform(shortest, 1.0) * min(h, w))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[top:top + side, left:left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)


def background_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """``[size,size,3]`` uint8: a crop of a package photo, or (one in five) a smooth gradient with blobs."""
    if rng.random() < 0.8:
        return _crop(package_photo(str(rng.choice(BACKGROUND_PHOTOS))), rng, size, 0.4)
    y, x = np.mgrid[0:size, 0:size] / size
    c0, c1 = rng.uniform(0.2, 0.9, 3), rng.uniform(0.2, 0.9, 3)
    image = c0 * (1 - y[..., None]) + c1 * y[..., None]
    for _ in range(4):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.2)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
        image = image * (1 - 0.5 * blob) + 0.5 * blob * rng.uniform(0, 1, 3)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


SKIN_TONES = np.array([[0.95, 0.78, 0.65], [0.85, 0.65, 0.5], [0.55, 0.38, 0.28], [0.36, 0.24, 0.17]])
HAIR_COLOURS = np.array([[0.1, 0.07, 0.05], [0.35, 0.2, 0.1], [0.8, 0.65, 0.35], [0.55, 0.55, 0.55]])


class Wardrobe:
    """What one person wears: per part a plain colour, stripes, checks, or a print (a package photo
    crop laid over the part's UV chart); skin on head and hands; hair and a face on the head."""

    def __init__(self, rng: np.random.Generator, arrays: dict):
        self.colours = rng.uniform(0.08, 0.95, (C.NUM_PARTS, 3))
        skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
        self.colours[PART["head"]] = self.colours[PART["hand"]] = skin
        # trousers share a colour, as do sleeves and the top, most of the time
        if rng.random() < 0.7:
            self.colours[PART["shin_foot"]] = self.colours[PART["thigh"]]
        if rng.random() < 0.6:
            self.colours[PART["upper_arm"]] = self.colours[PART["torso"]]
        if rng.random() < 0.4:
            self.colours[PART["forearm"]] = skin  # short sleeves
        self.kind = rng.integers(0, 4, C.NUM_PARTS)  # 0 plain, 1 stripes, 2 checks, 3 print
        self.frequency = rng.uniform(8, 40, C.NUM_PARTS)
        self.prints = {p: _crop(package_photo(str(rng.choice(PRINT_PHOTOS))), rng, 128, 0.2).astype(np.float64) / 255
                       for p in range(C.NUM_PARTS) if self.kind[p] == 3}
        self.paint = _face_and_hair(arrays, rng)

    def shade(self, uv: np.ndarray, part: np.ndarray) -> np.ndarray:
        """uv ``[K,2]`` in [0,1], part ``[K]`` -> RGB ``[K,3]`` in [0,1]."""
        out = self.colours[part].copy()
        bare = np.isin(part, [PART["head"], PART["hand"]]) | (np.abs(self.colours[part] - self.colours[PART["head"]]).sum(-1) < 1e-9)
        for p in np.unique(part):
            k = (part == p) & ~bare
            if not k.any():
                continue
            f = self.frequency[p]
            if self.kind[p] == 1:
                out[k] *= (1 - 0.35 * (0.5 + 0.5 * np.sin(uv[k, 1] * f * 2 * np.pi)))[:, None]
            elif self.kind[p] == 2:
                out[k] *= (1 - 0.35 * ((np.floor(uv[k, 0] * f) + np.floor(uv[k, 1] * f)) % 2))[:, None]
            elif self.kind[p] == 3:
                image = self.prints[p]
                rows = np.clip((uv[k, 1] * f / 8 % 1) * 127, 0, 127).astype(int)
                cols = np.clip((uv[k, 0] * f / 8 % 1) * 127, 0, 127).astype(int)
                out[k] = 0.3 * out[k] + 0.7 * image[rows, cols]
        return np.clip(out, 0, 1)


def _face_and_hair(arrays: dict, rng: np.random.Generator) -> np.ndarray:
    """Per-vertex paint ``[V,3]`` (NaN = none): eyes, brows and mouth on the front of the head, hair
    behind and on top (so a face detector can tell front from back)."""
    v = arrays["v_template"]
    paint = np.full(v.shape, np.nan)
    head = arrays["part_labels"] == PART["head"]
    centre, front = v[head].mean(0), v[head][:, 2].max()
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    paint[hair_region(arrays, rng.uniform(0.0, 0.02))] = hair
    eye_y = centre[1] + 0.02
    for side in (-1, 1):
        eye = np.array([side * 0.032, eye_y, front - 0.02])
        near = head & (np.linalg.norm((v - eye) * [1, 1.6, 0.5], axis=1) < 0.014) & (v[:, 2] > front - 0.05)
        paint[near] = [0.05, 0.05, 0.08]
        brow = head & (np.abs(v[:, 0] - side * 0.032) < 0.02) & (np.abs(v[:, 1] - eye_y - 0.025) < 0.005) \
            & (v[:, 2] > front - 0.04)
        paint[brow] = hair
    mouth = head & (np.abs(v[:, 0]) < 0.022) & (np.abs(v[:, 1] - (centre[1] - 0.045)) < 0.006) & (v[:, 2] > front - 0.04)
    paint[mouth] = [0.6, 0.15, 0.15]
    return paint


def hair_region(arrays: dict, reach_m: float = 0.0) -> np.ndarray:
    """``[V]`` bool: head vertices behind the face's plane or on top of the head (``reach_m`` lowers the hairline)."""
    v = arrays["v_template"]
    head = arrays["part_labels"] == PART["head"]
    centre, top = v[head].mean(0), v[head][:, 1].max()
    return head & ((v[:, 2] < centre[2] + 0.01 + reach_m) | (v[:, 1] > top - 0.06 - reach_m))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``[V,3]`` unit area-weighted normals of a mesh."""
    tri = vertices[faces]
    face_normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normal)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def clothing_offsets(arrays: dict, rng: np.random.Generator) -> np.ndarray:
    """``[V,3]`` m rest-pose offsets along the normals: hair volume, and loose clothes per part."""
    v, parts = arrays["v_template"], arrays["part_labels"]
    thickness = np.zeros(C.NUM_PARTS)
    thickness[PART["torso"]] = rng.choice([0.0, rng.uniform(0.01, 0.05)])
    thickness[PART["upper_arm"]] = rng.choice([0.0, rng.uniform(0.005, 0.03)])
    thickness[PART["thigh"]] = rng.choice([0.0, rng.uniform(0.01, 0.05)])
    per_vertex = thickness[parts]
    hair = hair_region(arrays)
    per_vertex[hair] = rng.uniform(0.0, 0.045)
    # Loose cloth flares towards its hem: the torso's lowest band stands off most.
    torso = parts == PART["torso"]
    if torso.any():
        low, high = v[torso, 1].min(), v[torso, 1].max()
        per_vertex[torso] *= 0.4 + 0.6 * np.clip((high - v[torso, 1]) / max(high - low, 1e-6), 0, 1)
    return vertex_normals(v, arrays["faces"]) * per_vertex[:, None]


def standing_pose(rng: np.random.Generator) -> np.ndarray:
    """A photo pose: standing, arms down to out, elbows a little bent, feet apart; ``[24,3]`` rad."""
    pose = np.zeros((24, 3), np.float32)
    pose[J["left_shoulder"], 2] = -rng.uniform(0.6, 1.3)
    pose[J["right_shoulder"], 2] = rng.uniform(0.6, 1.3)
    pose[J["left_elbow"], 1] = -rng.uniform(0.0, 0.6)
    pose[J["right_elbow"], 1] = rng.uniform(0.0, 0.6)
    pose[J["left_hip"], 2] = rng.uniform(0.0, 0.15)
    pose[J["right_hip"], 2] = -rng.uniform(0.0, 0.15)
    pose[J["pelvis"], 1] = rng.uniform(-0.35, 0.35)  # turned a little towards one side
    return pose


@functools.lru_cache(maxsize=1)
def _dance_frames() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every bundled dance's frames back to back: poses ``[F,24,3]``, translations ``[F,3]``, and
    which dance each frame belongs to ``[F]``."""
    poses, shifts, dances = [], [], []
    for index, name in enumerate(sorted(bundled_templates())):
        template = load_bundled(name)
        poses.append(template.poses)
        shifts.append(template.translations)
        dances.append(np.full(len(template.poses), index))
    return np.concatenate(poses).astype(np.float32), np.concatenate(shifts).astype(np.float32), np.concatenate(dances)


def dance_pose(rng: np.random.Generator, jitter_rad: float = 0.15) -> Tuple[np.ndarray, np.ndarray]:
    """A target pose: a frame of a bundled dance, its limbs jittered (so poses no dance holds come up too);
    (pose ``[24,3]`` rad, translation ``[3]`` m)."""
    return dance_pose_pair(rng, jitter_rad)[0]


def dance_pose_pair(rng: np.random.Generator, jitter_rad: float = 0.15):
    """Two consecutive target poses: :func:`dance_pose`'s (the same draws from ``rng``) and the dance's
    next frame with the same jitter (the previous one at a dance's last frame):
    ((pose, translation), (next pose, next translation))."""
    poses, shifts, dances = _dance_frames()
    k = int(rng.integers(len(poses)))
    jitter = rng.normal(0, jitter_rad, (23, 3)).astype(np.float32)
    after = k + 1 if k + 1 < len(poses) and dances[k + 1] == dances[k] else k - 1
    pair = []
    for frame in (k, after):
        pose = poses[frame].copy()
        pose[1:] += jitter
        pair.append((pose, shifts[frame].copy()))
    return tuple(pair)


@dataclasses.dataclass
class Render:
    image: np.ndarray  # [N,N,3] uint8: the scene
    person: np.ndarray  # [N,N] bool: clothed body drawn
    face: np.ndarray  # [N,N] int64: mesh face per pixel, -1 where empty
    barycentric: np.ndarray  # [N,N,3]: where in its face each pixel's surface point lies


class Scene:
    """One person in one place: ``scene.render(poses, translations)`` draws them through the true camera."""

    def __init__(self, seed: int, resolution: int = C.DEFAULT_RESOLUTION):
        rng = np.random.default_rng(seed)
        self.seed, self.resolution = seed, resolution
        arrays = load_open_body_arrays()
        self.faces = arrays["faces"]
        self.parts = arrays["part_labels"]
        self.vertex_uv = arrays["vertex_uv"]
        self.betas = np.clip(rng.normal(0, 0.8, 10), -2, 2).astype(np.float32)
        scale = rng.uniform(0.6, 1.0)
        self.camera = np.array([scale, rng.uniform(-0.2, 0.2), rng.uniform(-0.05, 0.12)], np.float32)
        self.wardrobe = Wardrobe(rng, arrays)
        self.background = background_image(rng, resolution)
        self.photo_pose = standing_pose(rng) if rng.random() < 0.7 else dance_pose(rng, 0.05)[0]
        rest = arrays["v_template"] + clothing_offsets(arrays, rng)
        self.body = BodyModel(rest, arrays["shapedirs"], arrays["posedirs"], arrays["J_regressor"], arrays["weights"],
                              arrays["faces"], arrays["kintree_table"][0].tolist())
        self._raster = MeshRasterizer(arrays["faces"], rest, resolution, C.MAX_CAMERA_SCALE, skinning_stretch())
        self.rng = rng

    def _projected(self, poses: Sequence[np.ndarray], translations: Sequence[np.ndarray]) -> torch.Tensor:
        """``[K,V,3]`` the clothed body's vertices in each pose, through the camera: (col px, row px, Z m)."""
        poses_t = torch.as_tensor(np.stack(poses), dtype=torch.float32)
        shifts = torch.as_tensor(np.stack(translations), dtype=torch.float32)
        with torch.no_grad():
            vertices, _ = self.body(torch.from_numpy(self.betas).expand(len(poses_t), -1), poses_t, shifts)
            camera = torch.from_numpy(self.camera).expand(len(poses_t), -1)
            return to_pixels(vertices, camera, self.resolution)

    def render(self, poses: Sequence[np.ndarray], translations: Sequence[np.ndarray]) -> List[Render]:
        """Draw the scene in each pose (``[24,3]`` rad, ``[3]`` m): one :class:`Render` per pose."""
        n = self.resolution
        with torch.no_grad():
            raster = self._raster(self._projected(poses, translations))
        renders = []
        for face, bary in zip(raster.face.numpy(), raster.barycentric.numpy()):
            hit = face >= 0
            corners = self.faces[face[hit]]
            nearest = corners[np.arange(len(corners)), bary[hit].argmax(-1)]
            uv = np.einsum("kc,kcd->kd", bary[hit], self.vertex_uv[corners])
            colour = self.wardrobe.shade(uv, self.parts[nearest])
            painted = ~np.isnan(self.wardrobe.paint[nearest, 0])
            colour[painted] = self.wardrobe.paint[nearest[painted]]
            image = self.background.reshape(-1, 3).copy()
            image[hit] = (colour * 255).round().astype(np.uint8)
            renders.append(Render(image.reshape(n, n, 3), hit.reshape(n, n), face.reshape(n, n), bary.reshape(n, n, 3)))
        return renders

    def photo(self) -> Render:
        return self.render([self.photo_pose], [np.zeros(3, np.float32)])[0]

    def target_poses(self, count: int) -> Tuple[np.ndarray, np.ndarray]:
        """``count`` target poses of this scene (``[K,24,3]`` rad, ``[K,3]`` m), fixed by its seed."""
        drawn = [dance_pose(self.rng) for _ in range(count)]
        return np.stack([p for p, _ in drawn]), np.stack([t for _, t in drawn])

    def target_pose_pairs(self, count: int):
        """:meth:`target_poses` (the same poses, for a scene made from the same seed) and each one's next
        frame of its dance: (poses, translations, next poses, next translations)."""
        drawn = [dance_pose_pair(self.rng) for _ in range(count)]
        return tuple(np.stack([pair[i][j] for pair in drawn]) for i in (0, 1) for j in (0, 1))

    def surface_flow(self, drawn: Render, pose: np.ndarray, translation: np.ndarray,
                     redrawn: Render) -> Tuple[np.ndarray, np.ndarray]:
        """Where each surface point ``drawn`` shows lies in ``redrawn``, the scene drawn in ``pose``:
        (``[N,N,2]`` (col, row) px, ``[N,N]`` bool: the point is on the person in ``drawn`` and the same
        mesh face, or one sharing a corner with it, is what the new drawing shows at its new pixel, i.e.
        it is not hidden there). Exact:
        the renderer knows each pixel's face and barycentric weights."""
        points = self._projected([pose], [translation])[0, :, :2].numpy()  # [V,2]
        face = np.where(drawn.person, drawn.face, 0)
        corners = points[self.faces[face]]  # [N,N,3,2]
        moved = np.einsum("hwc,hwcd->hwd", drawn.barycentric, corners)
        there = redrawn.face
        n = self.resolution
        col, row = np.rint(moved[..., 0]).astype(int), np.rint(moved[..., 1]).astype(int)
        inside = (col >= 0) & (col < n) & (row >= 0) & (row < n)
        found = np.where(inside, there[np.clip(row, 0, n - 1), np.clip(col, 0, n - 1)], -1)
        # A face smaller than a pixel may lose its pixel to a neighbour: one sharing a corner counts.
        shares = (self.faces[np.maximum(found, 0)][..., :, None] == self.faces[face][..., None, :]).any((-1, -2))
        return moved.astype(np.float32), drawn.person & (found >= 0) & shares


def covisible(photo: Render, target: Render) -> np.ndarray:
    """``[N,N]`` bool: target pixels whose mesh face the photo also draws."""
    seen = np.zeros(max(int(photo.face.max()), int(target.face.max())) + 1, bool)
    seen[np.unique(photo.face[photo.person])] = True
    out = np.zeros(target.face.shape, bool)
    out[target.person] = seen[target.face[target.person]]
    return out
