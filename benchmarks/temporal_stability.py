"""Does the learned refiner flicker? Consecutive target poses of the held-out pairs, with the exact flow.

The held-out shards (``python -m bodydance.training data``; scenes never trained on, their photos
fitted as a user's would be) hold each target pose's next frame of its dance, both through the
deterministic path, and the renderer's exact surface flow between the two in both directions (mesh
face and barycentric weights, kept only where the same face shows in both: ``Scene.surface_flow``).
Warp error: the mean absolute difference, in 8-bit levels over RGB, between a frame and the other
frame sampled along that flow, over the points shown in both, averaged over the two directions.
The truth's own warp error is a reference, not a floor: resampling a textured print costs more than
resampling a flat fill, so a smooth frame scores lower than the truth without being truer. The
paired difference between two generators on the same inputs is the measure; a smoother one wins
part of it by being smoother. The shards keep the flow in float16 (an eighth of a pixel at worst at
256 px), which moves a pair's warp error by a few hundredths of a level. Change error, beside it:
how far a frame's change along the flow is from the truth's own change (what the refiner's temporal
loss trains on), which a flat frame does not win.

Deterministic and learned (the committed refiner, or ``--weights``) get the same inputs; differences
are paired, with 95 % intervals from a bootstrap over scenes (``learned_generator.paired_interval``).

    python benchmarks/temporal_stability.py [--weights W --label L]
Writes benchmarks/results/temporal_stability{_L}.{md,json}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from bodydance.stages.generator_switch import WEIGHTS
from bodydance.stages.refiner import read_code_encoder, read_refiner
from bodydance.stages.style import StyleGenerator
from bodydance.training.pairs import DEFAULT_FOLDER as DATA
from bodydance.training.pairs import GENERATOR_INPUTS, NEXT, TEMPORAL_FLOWS, has_next_frames, load_shards
from learned_generator import generator_inputs, paired_interval, shard_region_style, shown_path

RESULTS = Path(__file__).parent / "results"
NAMES = ("truth", "deterministic", "learned")


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image [N,N,3]`` uint8 sampled at ``flow [N,N,2]`` (col, row) px, bilinear -> float32."""
    return cv2.remap(image.astype(np.float32), np.ascontiguousarray(flow[..., 0]), np.ascontiguousarray(flow[..., 1]),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp_error(first: np.ndarray, second: np.ndarray, flow: np.ndarray, shown: np.ndarray) -> float:
    """Mean |first - second sampled at flow| over ``shown``; images ``[N,N,3]`` uint8, flow ``[N,N,2]`` px."""
    if not shown.any():
        return float("nan")
    return float(np.abs(warp(second, flow) - first.astype(np.float32)).mean(-1)[shown].mean())


def change_errors(first, second, truth_first, truth_second, flow) -> np.ndarray:
    """``[N,N]`` |(first - second at flow) - (the truth's same)|, levels, mean over RGB."""
    change = first.astype(np.float32) - warp(second, flow)
    truth_change = truth_first.astype(np.float32) - warp(truth_second, flow)
    return np.abs(change - truth_change).mean(-1)


def change_error(first, second, truth_first, truth_second, flow, shown) -> float:
    """Mean :func:`change_errors` over ``shown``."""
    if not shown.any():
        return float("nan")
    return float(change_errors(first, second, truth_first, truth_second, flow)[shown].mean())


def shard_rows(shard: dict, generators: dict, encoder=None):
    rows = []
    style = shard_region_style(shard, encoder)
    for k in range(len(shard["frame"])):
        frames = {"truth": (shard["truth"][k], shard[NEXT + "truth"][k])}
        with torch.no_grad():
            for name, generator in generators.items():
                frames[name] = tuple(generator(*(generator_inputs(shard, k, prefix, style)[n] for n in GENERATOR_INPUTS))[0][0].numpy()
                                     for prefix in ("", NEXT))
        flows = [(shard[flow][k].astype(np.float32), shard[shown][k]) for flow, shown in TEMPORAL_FLOWS]
        row = {"seed": int(shard["seed"]), "pose": k, "points shown in both": int(sum(s.sum() for _, s in flows))}
        truth = frames["truth"]
        for name in NAMES:
            now, after = frames[name]
            row[name] = float(np.nanmean([warp_error(now, after, *flows[0]), warp_error(after, now, *flows[1])]))
            row[f"{name} change"] = float(np.nanmean([change_error(now, after, *truth, *flows[0]),
                                                      change_error(after, now, *truth[::-1], *flows[1])]))
        # Where the refiner left the pose's frame as the warp made it (outside its reach, or mixed
        # back to the frame): how much of the deterministic flicker lies there, out of its hands.
        shown = flows[0][1]
        untouched = shown & (frames["learned"][0] == frames["deterministic"][0]).all(-1)
        errors = change_errors(*frames["deterministic"], *truth, flows[0][0])
        row["shown points untouched"] = int(untouched.sum())
        row["shown points"] = int(shown.sum())
        row["deterministic change error on untouched points (sum)"] = float(errors[untouched].sum())
        row["deterministic change error on shown points (sum)"] = float(errors[shown].sum())
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=DATA / "held_out")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="the refiner's weights (a trial's)")
    parser.add_argument("--label", default="", help="results go to temporal_stability_<label>.* (a trial's)")
    args = parser.parse_args()
    stem = "temporal_stability" + (f"_{args.label}" if args.label else "")
    shards = load_shards(args.folder)
    if not shards or not all(has_next_frames(shard) for shard in shards):
        raise SystemExit(f"no held-out shards with next frames in {args.folder}: run `python -m bodydance.training data`")
    generators = {"deterministic": StyleGenerator(), "learned": StyleGenerator(read_refiner(args.weights)).eval()}
    encoder = read_code_encoder(args.weights)
    rows = [row for shard in shards for row in shard_rows(shard, generators, encoder)]
    scenes = len({r["seed"] for r in rows})
    means = {name: float(np.nanmean([r[name] for r in rows])) for name in NAMES}
    changes = {name: float(np.nanmean([r[f"{name} change"] for r in rows])) for name in NAMES[1:]}
    gain, (low, high), count = paired_interval(rows, "learned", "deterministic")
    untouched_share = sum(r["shown points untouched"] for r in rows) / max(1, sum(r["shown points"] for r in rows))
    untouched_error_share = (sum(r["deterministic change error on untouched points (sum)"] for r in rows)
                             / max(1e-9, sum(r["deterministic change error on shown points (sum)"] for r in rows)))
    change_gain, (change_low, change_high), _ = paired_interval(rows, "learned change", "deterministic change")
    lines = [f"# Temporal stability: {count} consecutive-pose pairs from {scenes} held-out scenes (exact flow)", "",
             "Warp error between a frame and its dance's next frame sampled along the renderer's exact flow, both "
             "directions, over surface points shown in both (8-bit levels, mean over RGB; lower is steadier). "
             "The truth's own is a reference, not a floor: flat fills resample with less error than textured "
             "prints. Change error: how far the frame's change along the flow is from the truth's change "
             "(a flat frame does not win it). Learned minus deterministic paired, 95 % bootstrap interval over scenes.", "",
             "| | warp error | change error |", "|---|---|---|"]
    for name in NAMES:
        lines.append(f"| {name} | {means[name]:.2f} | {f'{changes[name]:.2f}' if name in changes else '0 (itself)'} |")
    lines += ["", f"Learned minus deterministic: warp error **{gain:+.2f} [{low:+.2f}, {high:+.2f}]** levels, "
              f"change error **{change_gain:+.2f} [{change_low:+.2f}, {change_high:+.2f}]**. "
              f"Refiner weights: `{shown_path(args.weights)}`.", "",
              f"The refiner leaves {untouched_share:.0%} of the points shown in both frames exactly as the warp made "
              f"them (forward direction, in the pose's frame); they carry {untouched_error_share:.0%} of the "
              "deterministic frames' change error: flicker the refiner left as it was (outside its reach, or mixed back to the frame)."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps({"means": means, "change_error": changes, "learned_minus_deterministic": {
        "warp_error": gain, "warp_error_95": [low, high], "change_error": change_gain,
        "change_error_95": [change_low, change_high], "pairs": count},
        "shown_points_untouched_share": untouched_share, "deterministic_change_error_untouched_share": untouched_error_share,
        "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
