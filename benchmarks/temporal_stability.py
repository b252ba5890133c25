"""Does the learned refiner flicker? Consecutive target poses of held-out scenes, with the exact flow.

Each held-out scene (seeds from ``scenes.HELD_OUT_SEED``, never trained on) is fitted from its photo as
the data engine does it, then drawn through the frame path in a target pose and in its dance's next
frame (``Scene.target_pose_pairs``: the held-out pairs' own target poses). The renderer knows where
each surface point of one frame lies in the other (``Scene.surface_flow``: mesh face and barycentric
weights, kept only where the same face shows there), in both directions. Warp error: the mean absolute
difference, in 8-bit levels over RGB, between a frame and the other frame sampled along that flow,
over the points shown in both, averaged over the two directions. The truth's own warp error is a
reference, not a floor: resampling a textured print costs more than resampling a flat fill, so a
smooth frame scores lower than the truth without being truer. The paired difference between two
generators on the same inputs is the measure; a smoother one wins part of it by being smoother.

Deterministic and learned (the committed refiner) get the same inputs; differences are paired, with
95 % intervals from a bootstrap over scenes (``learned_generator.paired_interval``).

    python benchmarks/temporal_stability.py [--scenes 20] [--weights W --label L]
Writes benchmarks/results/temporal_stability.{md,json}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from bodydance.stages.generator_switch import WEIGHTS
from bodydance.stages.reconstruction.subject import Reconstructor
from bodydance.stages.refiner import read_refiner
from bodydance.stages.style import StyleGenerator
from bodydance.training.pairs import GENERATOR_INPUTS, DeterministicPath, fitted_subject
from bodydance.training.scenes import Scene, held_out_seeds
from bodydance_client import contract as C
from learned_generator import paired_interval

RESULTS = Path(__file__).parent / "results"
POSES_PER_SCENE = 4
NAMES = ("truth", "deterministic", "learned")


def warp_error(first: np.ndarray, second: np.ndarray, flow: np.ndarray, shown: np.ndarray) -> float:
    """Mean |first - second sampled at flow| over ``shown``; images ``[N,N,3]`` uint8, flow ``[N,N,2]`` px."""
    if not shown.any():
        return float("nan")
    sampled = cv2.remap(second, np.ascontiguousarray(flow[..., 0]), np.ascontiguousarray(flow[..., 1]),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return float(np.abs(sampled.astype(np.float32) - first.astype(np.float32)).mean(-1)[shown].mean())


def scene_rows(seed: int, reconstruct, path: DeterministicPath, learned: StyleGenerator):
    scene = Scene(seed, C.DEFAULT_RESOLUTION)
    fitted = fitted_subject(scene, reconstruct, path)
    if fitted is None:
        return []
    subject = fitted[1]
    poses, shifts, next_poses, next_shifts = scene.target_pose_pairs(POSES_PER_SCENE)
    frames = {}
    for when, (p, t) in (("now", (poses, shifts)), ("next", (next_poses, next_shifts))):
        inputs, deterministic = path.frames(subject, p, t)
        with torch.no_grad():
            refined = learned(*(inputs[name] for name in GENERATOR_INPUTS))[0]
        truths = scene.render(list(p), list(t))
        frames[when] = {"truth": truths, "deterministic": deterministic.numpy(), "learned": refined.numpy()}
    rows = []
    for k in range(POSES_PER_SCENE):
        now, after = frames["now"]["truth"][k], frames["next"]["truth"][k]
        forward = scene.surface_flow(now, next_poses[k], next_shifts[k], after)
        backward = scene.surface_flow(after, poses[k], shifts[k], now)
        row = {"seed": seed, "pose": k, "points shown in both": int(forward[1].sum() + backward[1].sum())}
        for name in NAMES:
            a = now.image if name == "truth" else frames["now"][name][k]
            b = after.image if name == "truth" else frames["next"][name][k]
            row[name] = float(np.nanmean([warp_error(a, b, *forward), warp_error(b, a, *backward)]))
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=20, help="held-out scenes (from the first)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="the refiner's weights (a trial's)")
    parser.add_argument("--label", default="", help="results go to temporal_stability_<label>.* (a trial's)")
    args = parser.parse_args()
    stem = "temporal_stability" + (f"_{args.label}" if args.label else "")
    path = DeterministicPath(C.DEFAULT_RESOLUTION)
    learned = StyleGenerator(read_refiner(args.weights)).eval()
    rows = []
    with Reconstructor(resolution=C.DEFAULT_RESOLUTION, frame_person=False) as reconstruct:
        for seed in held_out_seeds(args.scenes):
            rows.extend(scene_rows(seed, reconstruct, path, learned))
    scenes = len({r["seed"] for r in rows})
    means = {name: float(np.nanmean([r[name] for r in rows])) for name in NAMES}
    gain, (low, high), count = paired_interval(rows, "learned", "deterministic")
    lines = [f"# Temporal stability: {count} consecutive-pose pairs from {scenes} held-out scenes (exact flow)", "",
             "Warp error between a frame and its dance's next frame sampled along the renderer's exact flow, both "
             "directions, over surface points shown in both (8-bit levels, mean over RGB; lower is steadier). "
             "The truth's own is a reference, not a floor: flat fills resample with less error than textured "
             "prints. Learned minus deterministic paired, 95 % bootstrap interval over scenes.", "",
             "| | warp error |", "|---|---|"]
    for name in NAMES:
        lines.append(f"| {name} | {means[name]:.2f} |")
    lines += ["", f"Learned minus deterministic: **{gain:+.2f} [{low:+.2f}, {high:+.2f}]** levels. "
              f"Refiner weights: `{args.weights.name}`."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps({"means": means, "learned_minus_deterministic": {
        "mean": gain, "interval_95": [low, high], "pairs": count}, "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
