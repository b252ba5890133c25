"""How well the body fitted to one photo covers the person, with and without Pose's second, closer look
(``subject.CLOSER_LOOK_MARGIN``): IoU of the fitted body's silhouette with the person's.

* The Sports2D video, every ``--stride``-th frame where the benchmark's tracker follows the dancer, each
  frame fitted as a photo (``prepare``'s reconstruction: the whole frame, the largest person). The
  person's silhouette is the tracker's MediaPipe segmentation of a crop around him (real_footage.py).
  Frames where neither fit lands on him (IoU < 0.1: from about frame 75 the woman walking by is the
  largest person and is fitted, as intended for a photo) are left out.
* Rendered people (the training data engine's scenes: random body, clothes, pose, background) drawn
  small in a wide photo, as a phone photo of a person across a room: the 256 px scene's person pasted
  into a 1024 x 576 background (a third of its height, as the Sports2D dancer). The silhouette is the renderer's own.

The fitted silhouette is the open body (unclothed) in the fitted shape, pose and camera, in photo px.

    python benchmarks/closer_look.py [--stride 2] [--scenes 40]
Writes benchmarks/results/closer_look.{json,md} and closer_look_sports2d_wide.png: the committed wide photo
(benchmarks/data/sports2d_wide.jpg) with both fitted silhouettes' outlines (first look red, closer green).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bodydance.body import BodyModel
from bodydance.reference_render import rasterize
from bodydance.stages.reconstruction.subject import Reconstructor
from bodydance.training.scenes import Scene, background_image
from bodydance_client.errors import BodyDanceError
from footage_data import track_dancer
from learned_generator import paired_interval
from real_footage import decode, demo_video

RESULTS = Path(__file__).parent / "results"
WIDE_PHOTO = Path(__file__).parent / "data" / "sports2d_wide.jpg"
OUTLINES = {"first look": (230, 40, 40), "closer look": (40, 230, 60)}
ON_PERSON_IOU = 0.1
WIDE = (576, 1024)  # rows, cols of the wide photo the rendered people stand in


class FirstLookOnly(Reconstructor):
    """The reconstruction as it was before the closer look: Pose's first result, as it is."""

    def _closer_look(self, image, landmarks):
        return landmarks


def fitted_silhouette(body: BodyModel, fit, size) -> np.ndarray:
    """``[rows, cols]`` bool: the fitted body drawn through the fit's camera, placed in the photo."""
    n = 512
    with torch.no_grad():
        vertices, _ = body(torch.from_numpy(fit.betas)[None], torch.from_numpy(fit.source_pose)[None], torch.zeros(1, 3))
    drawn = rasterize(vertices[0].numpy(), body.faces.numpy(), fit.camera, n).silhouette.astype(np.uint8)
    left, top, side = (float(v) for v in fit.photo_square)
    to_photo = np.float32([[side / n, 0, left], [0, side / n, top]])
    return cv2.warpAffine(drawn, to_photo, (size[1], size[0]), flags=cv2.INTER_NEAREST) > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def both_fits(readers: dict, body: BodyModel, photo: np.ndarray, truth: np.ndarray) -> dict:
    row = {}
    for name, reconstruct in readers.items():
        try:
            row[name] = iou(fitted_silhouette(body, reconstruct(photo), photo.shape[:2]), truth)
        except BodyDanceError:
            row[name] = float("nan")
    return row


def sports2d_rows(readers: dict, body: BodyModel, stride: int) -> list:
    frames = decode(demo_video())
    height, width = frames[0].shape[:2]
    masks = track_dancer(frames)
    rows = []
    for t in [t for t, m in enumerate(masks) if m is not None][::stride]:
        x0, y0, crop = masks[t]
        truth = np.zeros((height, width), bool)
        seen = np.asarray(crop, np.float32)[:height - y0, :width - x0] > 0.5
        truth[y0:y0 + seen.shape[0], x0:x0 + seen.shape[1]] = seen
        rows.append({"seed": t, **both_fits(readers, body, frames[t], truth)})
        print(rows[-1], flush=True)
    return rows


def wide_photo(seed: int):
    """(``[576, 1024, 3]`` uint8 photo, ``[576, 1024]`` bool person) of one rendered scene."""
    scene = Scene(seed)
    drawn = scene.photo()
    rng = np.random.default_rng(seed)
    side, person, mask = scene.resolution, drawn.image, drawn.person
    photo = cv2.resize(background_image(rng, WIDE[1]), (WIDE[1], WIDE[1]))[:WIDE[0]].copy()
    top, left = int(rng.integers(0, WIDE[0] - side)), int(rng.integers(0, WIDE[1] - side))
    window = photo[top:top + side, left:left + side]
    window[mask] = person[mask]
    truth = np.zeros(WIDE, bool)
    truth[top:top + side, left:left + side] = mask
    return photo, truth


def rendered_rows(readers: dict, body: BodyModel, scenes: int) -> list:
    rows = []
    for seed in range(5000, 5000 + scenes):
        photo, truth = wide_photo(seed)
        rows.append({"seed": seed, **both_fits(readers, body, photo, truth)})
        print(rows[-1], flush=True)
    return rows


def outlines(readers: dict, body: BodyModel, path: Path) -> None:
    photo = cv2.cvtColor(cv2.imread(str(WIDE_PHOTO)), cv2.COLOR_BGR2RGB)
    drawn = photo.copy()
    for name, reconstruct in readers.items():
        silhouette = fitted_silhouette(body, reconstruct(photo), photo.shape[:2]).astype(np.uint8)
        contours, _ = cv2.findContours(silhouette, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(drawn, contours, -1, OUTLINES[name], 1)
    rows, cols = np.nonzero(cv2.cvtColor(drawn, cv2.COLOR_RGB2GRAY) != cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY))
    top, left = max(0, rows.min() - 20), max(0, cols.min() - 20)
    crop = drawn[top:rows.max() + 20, left:cols.max() + 20]
    cv2.imwrite(str(path), cv2.cvtColor(cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST),
                                        cv2.COLOR_RGB2BGR))


def summary(rows: list) -> dict:
    kept = [r for r in rows if max(np.nan_to_num(r["first look"]), np.nan_to_num(r["closer look"])) >= ON_PERSON_IOU]
    out = {"photos": len(rows), "on the person": len(kept)}
    for name in ("first look", "closer look"):
        values = np.array([r[name] for r in kept], float)
        out[name] = {"mean_iou": float(np.nanmean(values)), "median_iou": float(np.nanmedian(values)),
                     "share_iou_at_least_0.7": float(np.mean(np.nan_to_num(values) >= 0.7)),
                     "no_fit": int(np.isnan(values).sum())}
    mean, interval, pairs = paired_interval(kept, "closer look", "first look")
    out["gain"] = {"mean": mean, "interval_95": interval, "pairs": pairs}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--scenes", type=int, default=40)
    args = parser.parse_args()
    start = time.perf_counter()
    body = BodyModel.open_body()
    with FirstLookOnly() as first, Reconstructor() as closer:
        readers = {"first look": first, "closer look": closer}
        outlines(readers, body, RESULTS / "closer_look_sports2d_wide.png")
        rows = {"Sports2D video frames as photos": sports2d_rows(readers, body, args.stride),
                "rendered people, small in a wide photo": rendered_rows(readers, body, args.scenes)}
    summaries = {name: summary(r) for name, r in rows.items()}
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "closer_look.json").write_text(json.dumps(
        {"commit": commit, "stride": args.stride, "scenes": args.scenes, "summary": summaries, "rows": rows}, indent=1))
    lines = ["# One photo's body fit: Pose's first look alone, and with a second, closer look", "",
             f"Code: `{commit}`; run {time.perf_counter() - start:.0f} s. IoU of the fitted body's silhouette "
             "with the person's; photos where neither fit lands on the person (IoU < 0.1) left out. "
             "Gain: closer minus first, paired per photo, 95 % bootstrap interval.", "",
             "| photos | on the person | mean IoU first / closer | median IoU first / closer | IoU >= 0.7 first / closer "
             "| gain (IoU) |", "|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        a, b, g = s["first look"], s["closer look"], s["gain"]
        lines.append(f"| {name} | {s['on the person']} of {s['photos']} | {a['mean_iou']:.3f} / {b['mean_iou']:.3f} "
                     f"| {a['median_iou']:.3f} / {b['median_iou']:.3f} "
                     f"| {a['share_iou_at_least_0.7']:.0%} / {b['share_iou_at_least_0.7']:.0%} "
                     f"| {g['mean']:+.3f} [{g['interval_95'][0]:+.3f}, {g['interval_95'][1]:+.3f}] |")
    (RESULTS / "closer_look.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
