"""Motion transfer against synthetic ground truth, through the served pipeline.

Textured open bodies (procedural clothing in UV space, varied shapes and
backgrounds) are rendered by the exact reference rasteriser in pose A and
pose B. The photo of A goes through ``bodydance_subject`` and pose B through
``bodydance_frame`` on the real embedded server; the result is compared with
the true render of B. Two baselines run in the same process on the same
inputs: the source copied unchanged, and a 2D affine warp fitted to the
landmarks (A's fitted joints -> B's projected joints).

Also: reconstruction error against the known parameters (MPJPE, 2D
reprojection, mask IoU), an "oracle" row where the frame path receives the
true body parameters (separating fitting error from geometry/generation), and
the temporal warping error over a template.

    python benchmarks/synthetic_transfer.py [--subjects 6]
Writes benchmarks/results/synthetic_transfer.md (+ .json, + side-by-side PNGs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
import tritonclient.grpc as grpcclient
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bodydance.body import BodyModel, load_open_body_arrays
from bodydance.reference_render import interpolate, rasterize
from bodydance.skeleton import pose_skeleton, project, shaped_rest_joints
from bodydance.stages.reconstruction import plate
from bodydance_client import contract as C
from bodydance_client.compositing import composite
from bodydance_client.errors import NoPersonError
from bodydance_client.sdk import BodyDanceClient, frame_request, tensor_input
from bodydance_client.templates import load_bundled

RESULTS = Path(__file__).parent / "results"
N = C.DEFAULT_RESOLUTION
J = {n: i for i, n in enumerate(C.JOINT_NAMES)}


# ---------------------------------------------------------------- synthetic scenes
def clothing_texture(rng):
    """A function uv [K,2], part [K] -> RGB [K,3]: per-part colours with stripes or checks."""
    colours = rng.uniform(0.1, 0.95, (C.NUM_PARTS, 3))
    colours[1] = rng.choice([[0.85, 0.65, 0.5], [0.55, 0.38, 0.28], [0.95, 0.78, 0.65]])  # skin on the head
    colours[5] = colours[1]
    freq = rng.uniform(15, 40)
    kind = rng.integers(0, 2)

    def shade(uv, part):
        base = colours[part]
        if kind == 0:
            pattern = 0.5 + 0.5 * np.sin(uv[:, 1] * freq * 2 * np.pi)
        else:
            pattern = ((np.floor(uv[:, 0] * freq) + np.floor(uv[:, 1] * freq)) % 2).astype(float)
        clothed = ~np.isin(part, [1, 5])
        return np.clip(base * (1 - 0.35 * (pattern[:, None] * clothed[:, None])), 0, 1)
    return shade


def background(rng):
    y, x = np.mgrid[0:N, 0:N] / N
    c0, c1 = rng.uniform(0.2, 0.9, 3), rng.uniform(0.2, 0.9, 3)
    img = c0 * (1 - y[..., None]) + c1 * y[..., None]
    for _ in range(4):  # a few soft blobs
        cx, cy, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.05, 0.2)]
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - 0.5 * blob) + 0.5 * blob * rng.uniform(0, 1, 3)
    return img


def face_and_hair(arrays, rng):
    """Per-vertex paint ``[V,3]`` (NaN = none): eyes, brows and mouth on the front of the head, hair behind.

    Without a face a detector cannot tell the front of the head from the back
    and may mirror left and right.
    """
    v = arrays["v_template"]
    paint = np.full(v.shape, np.nan)
    head = arrays["part_labels"] == 1
    centre = v[head].mean(0)
    front = v[head][:, 2].max()
    hair = rng.choice([[0.1, 0.07, 0.05], [0.35, 0.2, 0.1], [0.8, 0.65, 0.35]])
    top = v[head][:, 1].max()
    behind = head & ((v[:, 2] < centre[2] + 0.01) | (v[:, 1] > top - 0.06))
    paint[behind] = hair
    eye_y = centre[1] + 0.02
    for side in (-1, 1):
        eye = np.array([side * 0.032, eye_y, front - 0.02])
        near = head & (np.linalg.norm((v - eye) * [1, 1.6, 0.5], axis=1) < 0.014) & (v[:, 2] > front - 0.05)
        paint[near] = [0.05, 0.05, 0.08]
        brow = head & (np.abs(v[:, 0] - side * 0.032) < 0.02) & (np.abs(v[:, 1] - eye_y - 0.025) < 0.005) & (v[:, 2] > front - 0.04)
        paint[brow] = hair
    mouth = head & (np.abs(v[:, 0]) < 0.022) & (np.abs(v[:, 1] - (centre[1] - 0.045)) < 0.006) & (v[:, 2] > front - 0.04)
    paint[mouth] = [0.6, 0.15, 0.15]
    return paint


class Scene:
    """One textured subject: render any pose with the true camera."""

    def __init__(self, body, arrays, rng):
        self.body, self.arrays = body, arrays
        self.betas = np.clip(rng.normal(0, 0.8, 10), -2, 2).astype(np.float32)
        self.camera = np.asarray([rng.uniform(0.8, 1.0), rng.uniform(-0.1, 0.1), rng.uniform(0.0, 0.1)], np.float32)
        self.shade = clothing_texture(rng)
        self.background = background(rng)
        uv_of_vertex = np.zeros((len(arrays["v_template"]), 2))
        uv_of_vertex[arrays["faces"].reshape(-1)] = arrays["uv"][arrays["face_uv"].reshape(-1)]
        self.vertex_uv = uv_of_vertex
        self.face_paint = face_and_hair(arrays, rng)

    def render(self, pose, translation=np.zeros(3, np.float32)):
        with torch.no_grad():
            verts, joints = self.body(torch.from_numpy(self.betas[None]), torch.from_numpy(pose[None]),
                                      torch.from_numpy(translation[None]))
        verts, joints = verts[0].numpy(), joints[0].numpy()
        r = rasterize(verts, self.arrays["faces"], self.camera, N)
        hit = r.silhouette
        uv = interpolate(r, self.arrays["faces"], self.vertex_uv)[hit]
        corners = self.arrays["faces"][r.face[hit]]
        part = self.arrays["part_labels"][corners[np.arange(len(corners)), r.barycentric[hit].argmax(-1)]]
        nearest = corners[np.arange(len(corners)), r.barycentric[hit].argmax(-1)]
        colour = self.shade(uv, part)
        painted = ~np.isnan(self.face_paint[nearest, 0])
        colour[painted] = self.face_paint[nearest[painted]]
        image = self.background.copy()
        image[hit] = colour
        return (image * 255).round().astype(np.uint8), r, joints


def source_pose(rng):
    pose = np.zeros((24, 3), np.float32)
    pose[J["left_shoulder"], 2] = -rng.uniform(0.9, 1.2)
    pose[J["right_shoulder"], 2] = rng.uniform(0.9, 1.2)
    pose[J["left_elbow"], 1] = -rng.uniform(0.0, 0.4)
    pose[J["right_elbow"], 1] = rng.uniform(0.0, 0.4)
    pose[J["left_hip"], 2] = rng.uniform(0.0, 0.15)
    pose[J["right_hip"], 2] = -rng.uniform(0.0, 0.15)
    return pose


# ---------------------------------------------------------------- baselines and metrics
def affine_baseline(photo, fitted_2d, target_2d):
    ok = np.isfinite(fitted_2d).all(1) & np.isfinite(target_2d).all(1)
    src = ((fitted_2d[ok] + 1) * N / 2 - 0.5).astype(np.float32)
    dst = ((target_2d[ok] + 1) * N / 2 - 0.5).astype(np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(src, dst)
    if matrix is None:
        return photo
    return cv2.warpAffine(photo, matrix, (N, N), borderMode=cv2.BORDER_REPLICATE)


def region_scores(pred, truth, region):
    if region.sum() < 50:
        return float("nan"), float("nan")
    ys, xs = np.nonzero(region)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    p, t = pred.astype(np.float64) / 255, truth.astype(np.float64) / 255
    psnr = peak_signal_noise_ratio(t[region], p[region], data_range=1.0)
    _, ssim_map = structural_similarity(t[box], p[box], channel_axis=2, data_range=1.0, full=True)
    return float(psnr), float(ssim_map.mean(-1)[region[box]].mean())


def covisible(render_a, render_b):
    """Pixels of B whose surface face is also drawn in A."""
    faces_a = np.unique(render_a.face[render_a.silhouette])
    seen = np.zeros(max(render_a.face.max(), render_b.face.max()) + 1, bool)
    seen[faces_a] = True
    out = np.zeros(render_b.face.shape, bool)
    out[render_b.silhouette] = seen[render_b.face[render_b.silhouette]]
    return out


# ---------------------------------------------------------------- served pipeline
def oracle_subject(raw, scene, photo, render_a, pose_a):
    """Subject tensors from the true body: the subject-side ONNX stages run on the server."""
    image = np.ascontiguousarray(photo.transpose(2, 0, 1)[None], dtype=np.uint8)  # the wire's uint8 levels
    mask = render_a.silhouette.astype(np.float32)[None, None]
    tensors = {"source_image": image, "person_mask": mask, "betas": scene.betas[None], "source_pose": pose_a[None],
               "camera": scene.camera[None]}
    parsed = raw.infer("source_parser", [tensor_input(s, tensors[s.name]) for s in C.SOURCE_PARSER.inputs])
    tensors["source_parsing"] = parsed.as_numpy("source_parsing")
    tensors["source_depth"] = parsed.as_numpy("source_depth")
    hole = plate.person_hole(render_a.silhouette.astype(np.float32), render_a.silhouette)
    tensors["plate_fill"] = np.clip(np.rint(plate.inpaint(photo, hole)), 0, 255).astype(np.uint8).transpose(2, 0, 1)[None]
    styled = raw.infer("style_encoder", [tensor_input(s, tensors[s.name]) for s in C.STYLE_ENCODER.inputs])
    tensors["region_style"] = styled.as_numpy("region_style")
    tensors["background"] = styled.as_numpy("background")
    del tensors["plate_fill"]
    return tensors


def frame_for(raw, tensors, pose, translation, subject=None):
    """The N x N frame; with a prepared ``subject``, composited back onto its photo (its working
    square may be smaller than the photo, and the truth is rendered over the whole photo)."""
    inputs, outputs = frame_request([tensor_input(s, tensors[s.name]) for s in C.FRAME_SUBJECT_TENSORS], pose,
                                    translation)
    result = raw.infer(C.FRAME_ENSEMBLE.name, inputs, outputs=outputs)
    if subject is None:
        return result.as_numpy("frame")[0]
    return subject.present(np.concatenate([result.as_numpy("frame")[0], result.as_numpy("frame_alpha")[0]], -1))


def in_photo(subject, camera, mask):
    """A prepared subject's camera and person mask moved from its working square to the whole (square) photo."""
    photo = C.PhotoSquare.letterbox(*subject.photo_size, N)
    box = (subject.square.left, subject.square.top, subject.square.side)
    plane = np.repeat((np.clip(mask, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)
    whole = composite(np.zeros((N, N, 3), np.uint8), box, plane, np.full((N, N, 1), 255, np.uint8))
    return subject.square.reframe_camera(camera, photo), whole[..., 0] / 255.0


def warping_error(frames, renders):
    """Mean |I_t+1(p) - I_t(p')| over pixels whose surface face is drawn in both frames (p' by face centroid)."""
    errors = []
    for t in range(len(frames) - 1):
        a, b = renders[t], renders[t + 1]
        both = covisible(a, b)
        if both.sum() < 50:
            continue
        # where each face was drawn in frame t (mean pixel), looked up for frame t+1's pixels
        rows, cols = np.nonzero(a.silhouette)
        fid = a.face[rows, cols]
        count = np.bincount(fid, minlength=a.face.max() + 1)
        mean_r = np.bincount(fid, rows, minlength=len(count)) / np.maximum(count, 1)
        mean_c = np.bincount(fid, cols, minlength=len(count)) / np.maximum(count, 1)
        rb, cb = np.nonzero(both)
        src_r = np.clip(mean_r[b.face[rb, cb]].round().astype(int), 0, N - 1)
        src_c = np.clip(mean_c[b.face[rb, cb]].round().astype(int), 0, N - 1)
        diff = np.abs(frames[t + 1][rb, cb].astype(float) - frames[t][src_r, src_c].astype(float))
        errors.append(diff.mean())
    return float(np.mean(errors))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--url", help="gRPC url of a running server (default: start the embedded one)")
    parser.add_argument("--template-frames", type=int, default=24)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    rng = np.random.default_rng(2026)
    body, arrays = BodyModel.open_body(), load_open_body_arrays()
    dance = load_bundled("disco")

    import contextlib

    from bodydance.serving.repository import REPOSITORY_ROOT
    from bodydance.serving.server import EmbeddedTritonServer
    from bodydance_export.freshness import ensure_exported

    with contextlib.ExitStack() as stack:
        if args.url:
            url = args.url
        else:
            ensure_exported(REPOSITORY_ROOT / "cpu")
            url = stack.enter_context(EmbeddedTritonServer(REPOSITORY_ROOT / "cpu")).grpc_url
        client = stack.enter_context(BodyDanceClient(url))
        client.wait_until_ready()
        raw = grpcclient.InferenceServerClient(url)
        rows, recon, temporal = [], [], []
        for k in range(args.subjects):
            scene = Scene(body, arrays, rng)
            pose_a = source_pose(rng)
            frame_b = int(rng.integers(0, dance.num_frames))
            pose_b, shift_b = dance.poses[frame_b], dance.translations[frame_b]
            photo, render_a, joints_a = scene.render(pose_a)
            truth, render_b, joints_b = scene.render(pose_b, shift_b)
            person, co = render_b.silhouette, covisible(render_a, render_b)

            outputs = {"copy source": photo}
            oracle = oracle_subject(raw, scene, photo, render_a, pose_a)
            outputs["ours, true body"] = frame_for(raw, oracle, pose_b, shift_b)
            try:
                subject = client.prepare(photo)
                fitted = {s.name: subject.tensors[s.name][0] for s in C.SUBJECT_TENSORS}
                outputs["ours, fitted"] = frame_for(raw, subject.tensors, pose_b, shift_b, subject)
                fitted["camera"], fitted["person_mask"] = in_photo(subject, fitted["camera"], fitted["person_mask"][0])
                fitted["person_mask"] = fitted["person_mask"][None]
                rest = shaped_rest_joints(fitted["betas"])
                fit_a, _ = pose_skeleton(fitted["source_pose"], rest)
                fit_b, _ = pose_skeleton(pose_b, rest)
                fitted_2d_a = project(fit_a, fitted["camera"])
                target_2d = project(fit_b + shift_b, fitted["camera"])
                outputs["2D affine warp"] = affine_baseline(photo, fitted_2d_a, target_2d)
                true_2d = project(joints_a, scene.camera)
                seen = np.isfinite(fitted_2d_a).all(1)
                recon.append({
                    "subject": k,
                    "mpjpe_mm": float(np.linalg.norm((fit_a - fit_a[0]) - (joints_a - joints_a[0]), axis=1).mean() * 1000),
                    "reprojection_px": float(np.linalg.norm(fitted_2d_a[seen] - true_2d[seen], axis=1).mean() * N / 2),
                    "mask_iou": float(((fitted["person_mask"][0] > 0.5) & render_a.silhouette).sum()
                                      / ((fitted["person_mask"][0] > 0.5) | render_a.silhouette).sum()),
                })
            except NoPersonError as err:
                recon.append({"subject": k, "detected": False, "error": str(err)})
            for method, image in outputs.items():
                psnr_p, ssim_p = region_scores(image, truth, person)
                psnr_c, ssim_c = region_scores(image, truth, co)
                rows.append({"subject": k, "method": method, "psnr_person": psnr_p, "ssim_person": ssim_p,
                             "psnr_covisible": psnr_c, "ssim_covisible": ssim_c})
            if k < 3:
                tiles = [photo, truth] + [outputs[m] for m in ("ours, fitted", "ours, true body", "2D affine warp",
                                                                  "copy source") if m in outputs]
                Image.fromarray(np.concatenate(tiles, 1)).save(RESULTS / f"synthetic_side_by_side_{k}.png")
            if k == 0:  # temporal warping error over the start of the template
                frames, renders, copies = [], [], []
                for t in range(args.template_frames):
                    _, r_t, _ = scene.render(dance.poses[t], dance.translations[t])
                    renders.append(r_t)
                    frames.append(frame_for(raw, oracle, dance.poses[t], dance.translations[t]))
                    copies.append(photo)
                true_frames = [scene.render(dance.poses[t], dance.translations[t])[0] for t in range(args.template_frames)]
                temporal = {"ours, true body": warping_error(frames, renders),
                            "ground truth renders": warping_error(true_frames, renders)}
        raw.close()

    methods = sorted({r["method"] for r in rows})
    summary = {}
    for m in methods:
        sel = [r for r in rows if r["method"] == m]
        summary[m] = {key: float(np.nanmean([r[key] for r in sel]))
                      for key in ("psnr_person", "ssim_person", "psnr_covisible", "ssim_covisible")}
    detected = [r for r in recon if "mpjpe_mm" in r]
    recon_summary = {key: float(np.mean([r[key] for r in detected])) for key in ("mpjpe_mm", "reprojection_px", "mask_iou")} if detected else {}
    (RESULTS / "synthetic_transfer.json").write_text(json.dumps(
        {"per_subject": rows, "reconstruction": recon, "summary": summary, "reconstruction_summary": recon_summary,
         "temporal_warping_error": temporal}, indent=2))
    lines = [f"# Synthetic transfer A -> B ({args.subjects} subjects, {N}x{N}, served pipeline)", "",
             "| method | PSNR person (dB) | SSIM person | PSNR co-visible (dB) | SSIM co-visible |", "|---|---|---|---|---|"]
    for m, s in summary.items():
        lines.append(f"| {m} | {s['psnr_person']:.2f} | {s['ssim_person']:.3f} | {s['psnr_covisible']:.2f} | {s['ssim_covisible']:.3f} |")
    lines += ["", f"Reconstruction (MediaPipe + fit) on {len(detected)}/{len(recon)} detected subjects: "
              + ", ".join(f"{k} {v:.3g}" for k, v in recon_summary.items()), "",
              "Temporal warping error (mean |I_t+1 - warp(I_t)| in 8-bit levels over co-visible surface, "
              f"first {args.template_frames} frames of 'disco'): "
              + ", ".join(f"{k} {v:.2f}" for k, v in temporal.items())]
    (RESULTS / "synthetic_transfer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
