"""How much any refiner composited the way the shipped one is could gain: the truth pasted where it may edit.

Issue 11 asks the learned generator to beat the deterministic one by 1.5 dB PSNR on the person of
held-out fitted pairs while confidently seen pixels stay the warp's. This measures the ceiling of
that design on the same held-out shards ``learned_generator.py`` scores: per pair, the
deterministic frame with the true render pasted

* ``where the refiner may edit`` -- :func:`bodydance.stages.refiner.edit_reach`: the dancer grown by
  ``RIM_PX``, less what the photo shows confidently. No refiner composited
  this way can beat this frame;
* ``blurred where the refiner may edit`` -- the deterministic frame blurred
  (``learned_generator.BLUR_SIGMA_PX``) there only: what smoothing alone buys a refiner;

and, for scale, the whole deterministic frame blurred, as ``learned_generator.py`` takes it. Paired gains
over the deterministic frame with 95 % bootstrap intervals over scenes, on the truth's person, its
co-visible part and the rest (surface the photo never showed).

    python benchmarks/refiner_ceiling.py [--pairs 0 (all)]
Needs the held-out shards (``python -m bodydance.training data``). Writes
benchmarks/results/refiner_ceiling.{md,json}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from bodydance.stages.refiner import edit_reach
from bodydance.stages.style import StyleGenerator, generator_planes
from bodydance.training.pairs import DEFAULT_FOLDER as DATA
from bodydance.training.pairs import GENERATOR_INPUTS, load_shards
from learned_generator import BLUR_SIGMA_PX, REGIONS, generator_inputs, paired_interval
from synthetic_transfer import region_scores

RESULTS = Path(__file__).parent / "results"
DETERMINISTIC = "deterministic"
IN_REACH, BLURRED_IN_REACH, BLURRED = "truth where the refiner may edit", "blurred where it may edit", "blurred"


@torch.no_grad()
def frames_for(inputs: dict, truth: np.ndarray) -> tuple:
    """name -> ``[N,N,3]`` uint8 frame for one pair, and the share of the truth's person in reach."""
    deterministic = StyleGenerator()(*(inputs[n] for n in GENERATOR_INPUTS))[0][0].numpy()
    unit = {k: (v.float() / 255.0 if v.dtype == torch.uint8 else v) for k, v in inputs.items()}
    planes = generator_planes(unit["source_image"], unit["background"], unit["region_style"],
                              unit["correspondence_flow"], unit["source_visibility"], unit["target_parsing"])
    reach = edit_reach(planes.seen * planes.person, planes.generated, planes.onehot)[1][0, 0].numpy() > 0.5
    blurred = np.clip(cv2.GaussianBlur(deterministic.astype(np.float32), (0, 0), BLUR_SIGMA_PX) + 0.5, 0, 255).astype(np.uint8)
    return {DETERMINISTIC: deterministic,
            IN_REACH: np.where(reach[..., None], truth, deterministic),
            BLURRED_IN_REACH: np.where(reach[..., None], blurred, deterministic),
            BLURRED: blurred}, reach


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=DATA / "held_out")
    parser.add_argument("--pairs", type=int, default=0, help="score at most this many pairs (0: all)")
    args = parser.parse_args()
    shards = load_shards(args.folder)
    if not shards:
        raise SystemExit(f"no held-out shards in {args.folder}: run `python -m bodydance.training data`")
    rows = []
    for shard in shards:
        for k in range(len(shard["frame"])):
            if args.pairs and len(rows) >= args.pairs:
                break
            truth, person = shard["truth"][k], shard["truth_person"][k]
            masks = {"person": person, "covisible": person & shard["covisible"][k], "unseen": person & ~shard["covisible"][k]}
            frames, reach = frames_for(generator_inputs(shard, k), truth)
            row = {"seed": int(shard["seed"]), "pose": k, "person_in_reach": float(reach[person].mean()) if person.any() else None}
            for name, frame in frames.items():
                for region, mask in masks.items():
                    row[f"{name} psnr {region}"], row[f"{name} ssim {region}"] = region_scores(frame, truth, mask)
            rows.append(row)
    others = (IN_REACH, BLURRED_IN_REACH, BLURRED)
    summary = {}
    for region in REGIONS:
        for metric in ("psnr", "ssim"):
            key = f"{metric} {region}"
            entry = {DETERMINISTIC: float(np.nanmean([r[f"{DETERMINISTIC} {key}"] for r in rows]))}
            for name in others:
                mean, interval, count = paired_interval(rows, f"{name} {key}", f"{DETERMINISTIC} {key}")
                entry[name] = {"mean": float(np.nanmean([r[f"{name} {key}"] for r in rows])), "gain": mean,
                               "gain_95": interval, "pairs": count}
            summary[key] = entry
    in_reach = [r["person_in_reach"] for r in rows if r["person_in_reach"] is not None]
    scenes = len({r["seed"] for r in rows})
    result = {"pairs": len(rows), "scenes": scenes, "summary": summary,
              "person_in_reach_median": float(np.median(in_reach)), "per_pair": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "refiner_ceiling.json").write_text(json.dumps(result, indent=1))
    lines = [f"# The refiner's ceiling: {len(rows)} held-out fitted pairs from {scenes} scenes", "",
             "The deterministic frame with the truth, or its own blur, pasted where a refiner composited as shipped "
             "may edit, and the whole frame blurred; gains over the deterministic frame, paired, "
             "95 % bootstrap interval over scenes. Median share of the truth's person within the refiner's "
             f"reach: {result['person_in_reach_median']:.0%}.", "",
             "| measure | deterministic | " + " | ".join(f"{n} (gain, 95 %)" for n in others) + " |",
             "|---|---|" + "---|" * len(others)]
    for key, entry in summary.items():
        lines.append(f"| {key} | {entry[DETERMINISTIC]:.3f} | " + " | ".join(
            f"{entry[n]['mean']:.3f} ({entry[n]['gain']:+.3f} [{entry[n]['gain_95'][0]:+.3f}, {entry[n]['gain_95'][1]:+.3f}])"
            for n in others) + " |")
    (RESULTS / "refiner_ceiling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
