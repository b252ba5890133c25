"""Background plate where the truth is known: synthetic scenes on real backgrounds, and the real
Sports2D video, whose background behind the man in one frame shows in frames after he moves.

Every plate is made from the same reconstruction (MediaPipe's mask and the fitted body, in
process) of the same photo; what differs is the hole and the fill:

* ``push-pull, mask`` -- the plate before this change: the mask (> 0.5) grown 2 px, push-pull fill;
* ``shift-map, soft mask`` -- OpenCV's patch-copying inpainting (``cv2.xphoto``);
* ``FSR, <hole>`` -- OpenCV's frequency-selective reconstruction (``cv2.xphoto``) on four holes:
  the mask (> 0.5), the mask with the fitted body's silhouette, the soft mask (> 0.15) with the
  silhouette where it lies within 3 grows of it, and the soft mask alone;
* ``Telea, soft mask`` -- the plate now, the reconstruction's fill (:mod:`bodydance.stages.reconstruction.plate`):
  OpenCV's fast-marching inpainting on the soft mask. Every hole but the first is grown by N/64;
  the working square's padding past the photo's edges is no source for this fill or those below;
* ``Telea, padding a source`` -- the same, filling from the padding too (the plate before);
* ``Telea + learned, soft mask`` -- that fill's hole refined by the plate inpainter trained here
  (:mod:`bodydance.stages.plate_inpainter`, as ``style_encoder`` runs it with ``BODYDANCE_PLATE=learned``). It trained on
  crops of scikit-image photos, 8 of the 10 synthetic backgrounds here among them (other crops, other
  holes); the Sports2D video it never saw.

Scored on the pixels the person covered (the true silhouette on synthetic scenes; on Sports2D
the man's grown mask in the photo frame), where the truth is known, PSNR and SSIM against it,
and on the person's fringe (the ring the mask misses: true silhouette minus mask) where the old
plate left ghosts. Synthetic backgrounds are crops of photos that ship in scikit-image.

    python benchmarks/background_plate.py [--scenes 24] [--sources 9,37,45,55]
Writes benchmarks/results/background_plate.md (+ .json, + background_plate_sheet.png).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from skimage.metrics import structural_similarity

import synthetic_transfer as synthetic
from learned_generator import paired_interval
from bodydance.geometry import fill_holes
from bodydance.stages.reconstruction import plate
from bodydance.stages.reconstruction.photo import crop_square
from bodydance.stages.reconstruction.subject import Reconstructor
from bodydance.training.scenes import BACKGROUND_PHOTOS
from bodydance_client import contract as C
from bodydance_client.errors import BodyDanceError

RESULTS = Path(__file__).parent / "results"
N = C.DEFAULT_RESOLUTION
METHODS = ("push-pull, mask", "shift-map, soft mask", "FSR, mask", "FSR, mask + body", "FSR, soft mask + near body",
           "FSR, soft mask", "Telea, padding a source", "Telea, soft mask", "Telea + learned, soft mask")


# Scene k sits on BACKGROUND_NAMES[k % 10].
BACKGROUND_NAMES = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "grass", "gravel",
                    "brick", "moon", "colorwheel")


def real_backgrounds() -> list:
    """Photos without people that ship in scikit-image, as RGB uint8, in :data:`BACKGROUND_NAMES`' order."""
    import skimage.data as data

    grey = lambda image: np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]  # noqa: E731
    return [grey(getattr(data, name)()) for name in BACKGROUND_NAMES]



def random_crop(image: np.ndarray, rng) -> np.ndarray:
    h, w = image.shape[:2]
    side = int(rng.uniform(0.5, 1.0) * min(h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    return cv2.resize(np.ascontiguousarray(image[y:y + side, x:x + side]), (N, N), interpolation=cv2.INTER_AREA)


def fsr(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """OpenCV's frequency-selective reconstruction (``cv2.xphoto``, fast variant; BGR)."""
    bgr = np.ascontiguousarray(image[..., ::-1])
    out = np.zeros_like(bgr)
    cv2.xphoto.inpaint(bgr, np.where(hole, 0, 255).astype(np.uint8), out, cv2.xphoto.INPAINT_FSR_FAST)
    return np.where(hole[..., None], out[..., ::-1], image)


def shift_map(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """OpenCV's shift-map inpainting (``cv2.xphoto``; it wants intensity first: Lab)."""
    lab = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_RGB2Lab))
    out = np.zeros_like(lab)
    cv2.xphoto.inpaint(lab, np.where(hole, 0, 255).astype(np.uint8), out, cv2.xphoto.INPAINT_SHIFTMAP)
    return np.where(hole[..., None], cv2.cvtColor(out, cv2.COLOR_Lab2RGB), image)


def fitted_silhouette(betas, pose, camera, resolution: int) -> np.ndarray:
    """``[N, N]`` bool: the fitted body drawn by the reference rasteriser."""
    from bodydance.body import BodyModel, load_open_body_arrays
    from bodydance.reference_render import rasterize

    if not hasattr(fitted_silhouette, "body"):
        fitted_silhouette.body, fitted_silhouette.faces = BodyModel.open_body(), load_open_body_arrays()["faces"]
    with torch.no_grad():
        vertices, _ = fitted_silhouette.body(torch.from_numpy(np.asarray(betas, np.float32)[None]),
                                             torch.from_numpy(np.asarray(pose, np.float32)[None]), torch.zeros(1, 3))
    return rasterize(vertices[0].numpy(), fitted_silhouette.faces, camera, resolution).silhouette


def inside_photo(photo: np.ndarray, square: C.PhotoSquare) -> np.ndarray:
    """``[N, N]`` bool: the square's pixels wholly inside ``photo``, as the reconstruction marks them."""
    return crop_square(np.ones(photo.shape[:2], np.float32), square, fill=0.0) > 0.999


def plates(image: np.ndarray, person_mask: np.ndarray, betas, pose, camera, inside: np.ndarray) -> tuple:
    """Each method's plate of ``image [N, N, 3]`` uint8 (``inside``: its pixels inside the photo), and
    the hole of the plate now."""
    silhouette = fitted_silhouette(betas, pose, camera, image.shape[0])
    n = image.shape[0]
    grow = max(2, int(round(n * plate.GROW_SHARE)))
    soft = person_mask > plate.HOLE_PROBABILITY
    near = cv2.dilate(soft.astype(np.uint8), np.ones((6 * grow + 1,) * 2, np.uint8)) > 0
    firm = (person_mask > 0.5).astype(np.float32)
    holes = {"mask": plate.person_hole(firm),  # mask > 0.5, grown
             "mask + body": plate.person_hole(firm, silhouette),
             "soft mask + near body": plate.person_hole(person_mask, silhouette & near),
             "soft mask": plate.person_hole(person_mask)}
    # the old StyleEncoder: mask > 0.5 grown by a 5x5 max-pool (2 px), push-pull fill
    known = torch.from_numpy((person_mask < 0.5).astype(np.float32))[None, None]
    known = 1.0 - torch.nn.functional.max_pool2d(1.0 - known, 5, stride=1, padding=2)
    levels = max(1, (n // 2).bit_length() - 1)
    with torch.no_grad():
        pushed = fill_holes(torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1)[None] / 255), known, levels)
    made = {"push-pull, mask": (pushed[0].numpy().transpose(1, 2, 0) * 255).round().clip(0, 255).astype(np.uint8),
            "shift-map, soft mask": shift_map(image, holes["soft mask"])}
    for name, hole in holes.items():
        made[f"FSR, {name}"] = fsr(image, hole)
    made["Telea, padding a source"] = plate.background_plate(image, person_mask)
    made["Telea, soft mask"] = plate.background_plate(image, person_mask, inside)  # the plate now
    made["Telea + learned, soft mask"] = learned_plate(made["Telea, soft mask"], person_mask)  # BODYDANCE_PLATE=learned
    return made, holes["soft mask"]


def learned_plate(filled: np.ndarray, person_mask: np.ndarray) -> np.ndarray:
    """The Telea fill ``[N, N, 3]`` uint8 refined by the committed plate inpainter, on the hole ``style_encoder`` gives it."""
    from bodydance.stages.plate_inpainter import person_hole, read_inpainter

    if not hasattr(learned_plate, "model"):
        learned_plate.model = read_inpainter()
    mask = torch.from_numpy(person_mask.astype(np.float32))[None, None]
    with torch.no_grad():
        plate_in = torch.from_numpy(np.ascontiguousarray(filled.transpose(2, 0, 1)))[None].float() / 255
        out = learned_plate.model(plate_in, person_hole(mask, filled.shape[0]))
    return (out[0].numpy().transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)


def scores(pred: np.ndarray, truth: np.ndarray, region: np.ndarray) -> dict:
    if region.sum() < 30:
        return {"psnr": float("nan"), "ssim": float("nan")}
    p, t = pred.astype(np.float64) / 255, truth.astype(np.float64) / 255
    mse = float(((p[region] - t[region]) ** 2).mean())
    _, full = structural_similarity(t, p, channel_axis=2, data_range=1.0, full=True)
    return {"psnr": float(10 * np.log10(1.0 / max(mse, 1e-10))), "ssim": float(full.mean(-1)[region].mean())}


def synthetic_scenes(reconstructor, count: int, seed: int, sheet: list) -> list:
    from bodydance.body import BodyModel, load_open_body_arrays

    body, arrays = BodyModel.open_body(), load_open_body_arrays()
    backgrounds = real_backgrounds()
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < count:
        scene = synthetic.Scene(body, arrays, rng)
        scene.background = random_crop(backgrounds[len(rows) % len(backgrounds)], rng).astype(np.float64) / 255
        photo, render, _ = scene.render(synthetic.source_pose(rng))
        try:
            r = reconstructor(photo)
        except BodyDanceError:
            continue
        square = C.PhotoSquare.from_tensor(r.photo_square, N)
        image = crop_square(photo, square)
        truth = crop_square((scene.background * 255).round().astype(np.uint8), square)
        person = crop_square(render.silhouette.astype(np.uint8), square, fill=0) > 0
        made, _ = plates(image, r.person_mask[0], r.betas, r.source_pose, r.camera, inside_photo(photo, square))
        fringe = person & (r.person_mask[0] <= 0.5)
        rows.append({m: {"person": scores(made[m], truth, person), "fringe": scores(made[m], truth, fringe)}
                     for m in METHODS})
        if len(sheet) < 3:
            sheet.append([image, truth] + [made[m] for m in METHODS])
    return rows


def sports2d(reconstructor, sources: list, sheet: list) -> list:
    from footage_data import track_dancer
    from real_footage import decode, demo_video

    frames = decode(demo_video())
    masks = track_dancer(frames)
    h, w = frames[0].shape[:2]

    def full_mask(t):
        x0, y0, crop = masks[t]
        out = np.zeros((h, w), np.uint8)
        out[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = np.asarray(crop, np.float32) > 0.5
        return cv2.dilate(out, np.ones((15, 15), np.uint8))  # his fringe and shadow, generously

    tracked = [t for t, m in enumerate(masks) if m is not None]
    rows = []
    for s in sources:
        r = reconstructor(frames[s])
        square = C.PhotoSquare.from_tensor(r.photo_square, N)
        image = crop_square(frames[s], square)
        # the truth: per pixel, the median of the frames in which the man is clearly elsewhere
        stack, valid = [], []
        for t in tracked[::2]:
            if abs(t - s) < 10:
                continue
            stack.append(crop_square(frames[t], square))
            valid.append(crop_square(1 - full_mask(t), square, fill=0) > 0)
        stack, valid = np.stack(stack).astype(np.float32), np.stack(valid)
        count = valid.sum(0)
        truth = np.nanmedian(np.where(valid[..., None], stack, np.nan), axis=0)
        truth = np.nan_to_num(truth).round().astype(np.uint8)
        made, new_hole = plates(image, r.person_mask[0], r.betas, r.source_pose, r.camera, inside_photo(frames[s], square))
        person = crop_square(full_mask(s), square, fill=0) > 0
        known = count >= 3
        region = person & known
        # how still the camera is: the truth against the photo where nobody is, in both
        still = ~person & ~new_hole & known
        rows.append({"source": s, "person_px": int(person.sum()), "scored_px": int(region.sum()),
                     "photo_vs_truth_away_from_him": scores(image, truth, still),
                     **{m: {"person": scores(made[m], truth, region)} for m in METHODS}})
        if len(sheet) < 5:
            sheet.append([image, np.where(known[..., None], truth, 0).astype(np.uint8)] + [made[m] for m in METHODS])
    return rows


def summarise(rows: list, key: str) -> dict:
    out = {}
    for m in METHODS:
        out[m] = {}
        for metric in ("psnr", "ssim"):
            values = [row[m][key][metric] for row in rows if np.isfinite(row[m][key][metric])]
            out[m][metric] = ({"median": float(np.median(values)), "p10": float(np.quantile(values, 0.1)),
                               "p90": float(np.quantile(values, 0.9)), "n": len(values)} if values else None)
    return out


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [f"# Background plate where the truth is known ({meta['date']}, `{meta['commit']}`)", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             f"Synthetic: {meta['scenes']} textured bodies on crops of {len(real_backgrounds())} scikit-image photos "
             f"(seed {meta['seed']}); Sports2D: source frames {meta['sources']}, truth = per-pixel median of the "
             "frames (every 2nd tracked, 10+ frames away) where his grown mask is elsewhere, at least 3 of them. "
             "Median [p10, p90] over scenes / sources.", "",
             "| plate | synthetic, person PSNR (dB) | synthetic, person SSIM | synthetic, fringe PSNR (dB) "
             "| Sports2D, person PSNR (dB) | Sports2D, person SSIM |", "|---|---|---|---|---|---|"]

    def cell(s):
        return "-" if not s else f"{s['median']:.2f} [{s['p10']:.2f}, {s['p90']:.2f}]"

    for m in METHODS:
        syn, fringe, real = result["synthetic_summary"][m], result["synthetic_fringe_summary"][m], result["sports2d_summary"][m]
        lines.append(f"| {m} | {cell(syn['psnr'])} | {cell(syn['ssim'])} | {cell(fringe['psnr'])} "
                     f"| {cell(real['psnr'])} | {cell(real['ssim'])} |")
    lines += ["", "Paired per scene / frame (mean, 95 % bootstrap interval over scenes; Sports2D: each frame). "
                  "The padding left out of the Telea fill, against filling from it:", ""]
    lines += paired_lines(result, TELEA, PADDED)
    lines += ["", "The learned inpainter against the Telea fill it refines:", ""]
    lines += paired_lines(result, LEARNED, TELEA)
    trained_on = BACKGROUND_PHOTOS  # what the inpainter trained on
    unseen = [row for k, row in enumerate(result["synthetic"]) if BACKGROUND_NAMES[k % len(BACKGROUND_NAMES)] not in trained_on]
    gains = paired_gains(unseen, "person", "psnr", LEARNED, TELEA)
    if gains.size:
        lines.append(f"- synthetic PSNR, only the {gains.size} scenes on photos the inpainter never trained on "
                     f"({', '.join(n for n in BACKGROUND_NAMES if n not in trained_on)}): "
                     + ", ".join(f"{g:+.3f}" for g in gains) + f" (mean {gains.mean():+.3f})")
    cost = meta.get("style_encoder_ms")
    if cost:
        lines += ["", f"Cost, once per photo: style_encoder in eager PyTorch at {N} px, batch 1, median of "
                      f"{cost['rounds']} alternating rounds: {cost['learned']:.1f} ms with the inpainter, "
                      f"{cost['telea']:.1f} ms without ({cost['learned'] / cost['telea']:.1f}x)."]
    still = [row["photo_vs_truth_away_from_him"]["psnr"] for row in result["sports2d"]]
    lines += ["", f"Sports2D truth check: away from him, the photo frame against the median truth gives "
                  f"{', '.join(f'{v:.1f}' for v in still)} dB (a still camera; the ceiling of the real-footage scores).",
              "", "Sheet (`background_plate_sheet.png`), per row: photo square, truth (black: unknown), then the "
                  "plates in the table's order.", ""]
    return "\n".join(lines)


LEARNED, TELEA, PADDED = "Telea + learned, soft mask", "Telea, soft mask", "Telea, padding a source"


def paired_gains(rows: list, key: str, metric: str, method: str, baseline: str) -> np.ndarray:
    """``method`` minus ``baseline``, per row where both are finite."""
    pairs = [(row[method][key][metric], row[baseline][key][metric]) for row in rows]
    return np.array([a - b for a, b in pairs if np.isfinite(a) and np.isfinite(b)])


def paired_lines(result: dict, method: str, baseline: str) -> list:
    """Markdown bullets: ``method`` minus ``baseline`` on the synthetic hole, its fringe and Sports2D."""
    lines = []
    for what, rows, key in (("synthetic", result["synthetic"], "person"), ("synthetic fringe", result["synthetic"], "fringe"),
                            ("Sports2D", result["sports2d"], "person")):
        for metric in ("psnr", "ssim"):
            gains = paired_gains(rows, key, metric, method, baseline)
            if what == "Sports2D":
                lines.append(f"- {what} {metric.upper()}: " + ", ".join(f"{g:+.3f}" for g in gains))
            elif gains.size:
                flat = [{"seed": k, "gain": g, "zero": 0.0} for k, g in enumerate(gains)]  # one row per scene
                mean, (low, high), count = paired_interval(flat, "gain", "zero")
                lines.append(f"- {what} {metric.upper()}: {mean:+.3f} [{low:+.3f}, {high:+.3f}] ({count} scenes)")
    return lines


def encoder_cost(rounds: int = 20) -> dict:
    """Median eager ms of ``style_encoder`` with and without the inpainter (rounds alternating)."""
    from bodydance.stages.plate_inpainter import read_inpainter
    from bodydance.stages.style import StyleEncoder
    from bodydance_export.sample_inputs import sample_inputs

    inputs = [torch.from_numpy(v) for v in sample_inputs(C.STYLE_ENCODER, N, batch=1).values()]
    encoders = {"learned": StyleEncoder(N, read_inpainter()).eval(), "telea": StyleEncoder(N).eval()}
    times = {name: [] for name in encoders}
    with torch.no_grad():
        for _ in range(rounds):
            for name, encoder in encoders.items():
                start = time.perf_counter()
                encoder(*inputs)
                times[name].append((time.perf_counter() - start) * 1000)
    return {"rounds": rounds, **{name: float(np.median(t)) for name, t in times.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sources", default="9,37,45,55")
    args = parser.parse_args()
    import subprocess

    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parents[1],
                            capture_output=True, text=True).stdout.strip()
    start = time.perf_counter()
    sources = [int(s) for s in args.sources.split(",") if s]
    sheet = []
    with Reconstructor(resolution=N) as reconstructor:
        syn = synthetic_scenes(reconstructor, args.scenes, args.seed, sheet)
        real = sports2d(reconstructor, sources, sheet)
    result = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": commit, "scenes": args.scenes,
                       "seed": args.seed, "sources": sources, "runtime_s": time.perf_counter() - start,
                       "style_encoder_ms": encoder_cost()},
              "synthetic": syn, "sports2d": real, "synthetic_summary": summarise(syn, "person"),
              "synthetic_fringe_summary": summarise(syn, "fringe"), "sports2d_summary": summarise(real, "person")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "background_plate.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "background_plate.md").write_text(markdown(result))
    Image.fromarray(np.concatenate([np.concatenate(row, 1) for row in sheet], 0)).save(
        RESULTS / "background_plate_sheet.png")
    print(markdown(result))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
