"""Where the photo hides a surface point, or the fit points past the person, whose pixels does a frame copy?

An ablation of the deterministic frame path on held-out synthetic scenes (``scenes.held_out_seeds``:
clothed, textured people on real photos, never trained on). Each photo goes through the real subject
side with the **fitted** body, as ``python -m bodydance.training data`` does; every target pose then
runs the deterministic frame path once per variant, on the same inputs:

* ``part mean``: nothing borrowed; a hidden point takes its part's mean colour;
* ``mirror``: the left-right mirror image borrowed (the frame path before this benchmark);
* ``mirror, lent from inside``: only from ``BodyGeometry.LEND_INSIDE_PX`` inside the fitted outline;
* ``far side too``: then the far side of the point's own part, then of its mirror image
  (:func:`bodydance.body.opposite_map`: the front of a sleeve for its back), as the issue suggested;
* ``shipped``: mirror lent from inside, and pixels copied only where the flow lands on the photo's
  person (``StyleGenerator.COPY_FROM_PERSON_ONLY``);
* ``shipped + far side``.

``--study reach`` instead varies how far past the bare body the photo's pixels are carried (hair,
loose clothes): the frame path's margin and parsing reach (N/24 as shipped; N/16, N/12, N/8) with the
source parsing grown at least as far. ``--study person``: whether a point counts as shown only where it
lands on the photo's person. ``--study carry``: what pixels past the target body may carry from the photo
(``BodyGeometry.CARRY_PAST_THE_BODY``): anything; only what lay past the fitted body; or that, but
anything within ``CARRY_NEAR_PX`` of the target body (shipped). ``--study hands``: the colour hands take
when the photo shows neither (``StyleEncoder.UNSEEN_HAND_COLOUR``): the face's skin or the torso's; and
whether hands the photo shows are pulled towards the face's skin (``StyleEncoder.HAND_STATISTICS``).
``--study limbs``: which parts' photo pixels past the fitted body the parsing prior carries beside
the target body (``ParsingPrior.CARRIED_PARTS``, ``NEAR_REACH_PX``): every part's the whole reach (N/24);
the arms' and hands' not at all; or only within 3 or 6 px of the target body.

PSNR and SSIM against the scene's true render, on the person, on its co-visible part, on the
surface the photo never drew, on the hands' part of that (where at least 50 px) and on the whole frame; paired differences (shipped minus each other)
with 95 % bootstrap intervals over scenes; and the eager frame path's time per frame with each
variant, rounds alternating.

    python benchmarks/hidden_surface.py [--study borrowing|reach|person|carry|hands|limbs] [--scenes 50] [--poses 4]
Writes benchmarks/results/hidden_surface.{md,json} and hidden_surface_sheet.png (reach:
hidden_surface_reach.*).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from PIL import Image
from rich.progress import track

from bodydance.body import load_open_body_arrays, opposite_map
from bodydance.stages.reconstruction.subject import Reconstructor
from bodydance.training.pairs import DeterministicPath
from bodydance.training.scenes import Scene, covisible, held_out_seeds
from bodydance_client import contract as C
from bodydance_client.errors import BodyDanceError
from learned_generator import REGIONS, paired_interval
from synthetic_transfer import region_scores

RESULTS = Path(__file__).parent / "results"
SHIPPED = "shipped"
REGIONS_SCORED = REGIONS + ("unseen hand", "frame")


@dataclasses.dataclass(frozen=True)
class Variant:
    donor_maps: torch.Tensor  # [D,V] vertex maps tried in order for a hidden point
    lend_inside_px: int
    copy_from_person_only: bool
    reach_px: int  # how far past the bare body the flow and the target parsing go
    source_grow_px: int  # how far the source parsing grows the fitted body's parts into the person mask
    shown_only_on_person: bool = True  # a point counts as shown only where it lands on the photo's person
    carry_past_the_body: str = "near the body"  # what pixels past the target body may carry (BodyGeometry.CARRY_PAST_THE_BODY)
    unseen_hand_colour: str = "skin"  # StyleEncoder.UNSEEN_HAND_COLOUR
    hand_statistics: str = "plain"  # StyleEncoder.HAND_STATISTICS
    carried_parts: Optional[Tuple[str, ...]] = None  # ParsingPrior.CARRIED_PARTS: parts carried the whole reach past the body
    near_reach_px: int = 0  # ParsingPrior.NEAR_REACH_PX: how far the other parts' pixels are

    def apply(self, path: DeterministicPath):
        path.geometry.surface.donor_maps = self.donor_maps
        path.geometry.LEND_INSIDE_PX = self.lend_inside_px
        path.generator.COPY_FROM_PERSON_ONLY = self.copy_from_person_only
        path.geometry.margin, path.prior.reach = self.reach_px, self.reach_px
        path.geometry.fill_levels = int(np.ceil(np.log2(self.reach_px))) + 1
        path.parser.grow_steps = self.source_grow_px
        path.geometry.SHOWN_ONLY_ON_PERSON = self.shown_only_on_person
        path.geometry.CARRY_PAST_THE_BODY = self.carry_past_the_body
        path.encoder.UNSEEN_HAND_COLOUR = self.unseen_hand_colour
        path.encoder.HAND_STATISTICS = self.hand_statistics
        path.prior.CARRIED_PARTS, path.prior.NEAR_REACH_PX = self.carried_parts, self.near_reach_px


def shipped_variant(path: DeterministicPath) -> Variant:
    return Variant(path.geometry.surface.donor_maps.clone(), path.geometry.LEND_INSIDE_PX,
                   path.generator.COPY_FROM_PERSON_ONLY, path.geometry.margin, path.parser.grow_steps,
                   path.geometry.SHOWN_ONLY_ON_PERSON, path.geometry.CARRY_PAST_THE_BODY, path.encoder.UNSEEN_HAND_COLOUR,
                   path.encoder.HAND_STATISTICS, path.prior.CARRIED_PARTS, path.prior.NEAR_REACH_PX)


def borrowing_variants(path: DeterministicPath):
    """Name -> :class:`Variant` for the borrowing study, ``shipped`` being the path as it comes."""
    shipped = shipped_variant(path)
    mirror = shipped.donor_maps[0]
    arrays = load_open_body_arrays()
    opposite = torch.from_numpy(opposite_map(arrays["v_template"], arrays["part_labels"],
                                             keep_parts=(C.PART_NAMES.index("head"),)))
    far_side = torch.stack([mirror, opposite, mirror[opposite]])
    return {"part mean": dataclasses.replace(shipped, donor_maps=torch.arange(len(mirror))[None], lend_inside_px=0,
                                             copy_from_person_only=False),
            "mirror": dataclasses.replace(shipped, donor_maps=mirror[None], lend_inside_px=0, copy_from_person_only=False),
            "mirror, lent from inside": dataclasses.replace(shipped, donor_maps=mirror[None], copy_from_person_only=False),
            "far side too": dataclasses.replace(shipped, donor_maps=far_side, copy_from_person_only=False),
            SHIPPED: shipped,
            "shipped + far side": dataclasses.replace(shipped, donor_maps=far_side)}


def reach_variants(path: DeterministicPath):
    """Name -> :class:`Variant` for the reach study."""
    shipped, n = shipped_variant(path), path.geometry.resolution
    wider = {f"reach N/{d}": dataclasses.replace(shipped, reach_px=n // d, source_grow_px=max(shipped.source_grow_px, n // d))
             for d in (16, 12, 8)}
    return {SHIPPED: shipped, **wider}


def person_variants(path: DeterministicPath):
    """Name -> :class:`Variant` for the person study: is a point the fit lays over something else shown?"""
    shipped = shipped_variant(path)
    return {SHIPPED: shipped, "shown wherever the fit lands": dataclasses.replace(shipped, shown_only_on_person=False),
            "no copy check in the generator": dataclasses.replace(shipped, copy_from_person_only=False)}


def carry_variants(path: DeterministicPath):
    """Name -> :class:`Variant` for the carry study: what may a pixel past the target body carry from the photo?"""
    shipped = shipped_variant(path)
    return {SHIPPED: shipped, "carry anything": dataclasses.replace(shipped, carry_past_the_body="anything"),
            "only from past the body": dataclasses.replace(shipped, carry_past_the_body="past the body")}


def hands_variants(path: DeterministicPath):
    """Name -> :class:`Variant` for the hands study: what colour do hands the photo never showed take?"""
    shipped = shipped_variant(path)
    return {SHIPPED: shipped, "torso's colour": dataclasses.replace(shipped, unseen_hand_colour="torso"),
            "skin only where no hand is shown": dataclasses.replace(shipped, hand_statistics="plain")}


def limbs_variants(path: DeterministicPath):
    """Name -> :class:`Variant` for the limbs study: which parts' pixels past the fitted body are carried?"""
    shipped, not_arms = shipped_variant(path), ("head", "torso", "thigh", "shin_foot")
    return {SHIPPED: shipped,
            "every part": dataclasses.replace(shipped, carried_parts=None, near_reach_px=0),
            "not past arms": dataclasses.replace(shipped, carried_parts=not_arms, near_reach_px=0),
            "arms 3 px": dataclasses.replace(shipped, carried_parts=not_arms, near_reach_px=3),
            "arms 6 px": dataclasses.replace(shipped, carried_parts=not_arms, near_reach_px=6)}


# study -> (variants, the variants the shipped one is compared with, the variants the sheet shows)
STUDIES = {
    "borrowing": (borrowing_variants, ("mirror", "part mean", "shipped + far side"),
                  ("part mean", "mirror", SHIPPED, "shipped + far side")),
    "reach": (reach_variants, ("reach N/16", "reach N/12", "reach N/8"), (SHIPPED, "reach N/12", "reach N/8")),
    "person": (person_variants, ("shown wherever the fit lands", "no copy check in the generator"),
               ("shown wherever the fit lands", SHIPPED)),
    "carry": (carry_variants, ("carry anything", "only from past the body"), ("carry anything", "only from past the body", SHIPPED)),
    "hands": (hands_variants, ("torso's colour", "skin only where no hand is shown"), ("torso's colour", SHIPPED)),
    "limbs": (limbs_variants, ("every part", "not past arms", "arms 3 px", "arms 6 px"), ("every part", "arms 3 px", "arms 6 px")),
}


def score_scenes(study: str, seeds, poses_per_scene: int, resolution: int):
    path = DeterministicPath(resolution).eval()
    variants, _, shown_on_sheet = STUDIES[study]
    chosen = variants(path)
    rows, sheet, refused, timed = [], [], 0, None
    arrays = load_open_body_arrays()
    part_of_face = np.append(arrays["part_labels"][arrays["faces"][:, 0]], -1)  # index -1: no face
    hand = C.PART_NAMES.index("hand")
    with Reconstructor(resolution=resolution, frame_person=False) as reconstruct:
        for seed in track(list(seeds), description="scenes"):
            scene = Scene(seed, resolution)
            photo = scene.photo()
            try:
                reconstruction = reconstruct(photo.image)
            except BodyDanceError:
                refused += 1
                continue
            poses, translations = scene.target_poses(poses_per_scene)
            truths = scene.render(list(poses), list(translations))
            frames = {}
            for name, variant in chosen.items():
                variant.apply(path)
                subject = path.subject(reconstruction)  # the source parsing's growth may differ
                frames[name] = path.frames(subject, poses, translations)[1].numpy()
                timed = timed or (reconstruction, poses, translations)
            for k, truth in enumerate(truths):
                shown = covisible(photo, truth)
                masks = {"person": truth.person, "covisible": truth.person & shown, "unseen": truth.person & ~shown,
                         "unseen hand": truth.person & ~shown & (part_of_face[truth.face] == hand),
                         "frame": np.ones_like(truth.person)}
                row = {"seed": seed, "pose": k}
                for name, frame in frames.items():
                    for region in REGIONS_SCORED:
                        row[f"{name} psnr {region}"], row[f"{name} ssim {region}"] = region_scores(
                            frame[k], truth.image, masks[region])
                rows.append(row)
            if len(sheet) < 6:
                sheet.append(np.concatenate([photo.image, truths[0].image] + [frames[n][0] for n in shown_on_sheet], 1))
    chosen[SHIPPED].apply(path)
    return rows, sheet, refused, path, timed


def frame_path_cost(path: DeterministicPath, chosen: dict, timed: tuple, rounds: int):
    """Median eager ms per frame (batch 1) of the deterministic frame path with each variant, on one
    held-out ``(reconstruction, poses, translations)``."""
    reconstruction, poses, translations = timed
    timings = {name: [] for name in chosen}
    for _ in range(rounds):
        for name, variant in chosen.items():
            variant.apply(path)
            subject = path.subject(reconstruction)
            start = time.perf_counter()
            path.frames(subject, poses[:1], translations[:1])
            timings[name].append((time.perf_counter() - start) * 1000)
    chosen[SHIPPED].apply(path)
    return {name: float(np.median(t)) for name, t in timings.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", choices=tuple(STUDIES), default="borrowing")
    parser.add_argument("--scenes", type=int, default=50)
    parser.add_argument("--poses", type=int, default=4, help="target poses per scene")
    parser.add_argument("--rounds", type=int, default=20, help="timing rounds per chain")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    resolution = C.DEFAULT_RESOLUTION
    rows, sheet, refused, path, timed = score_scenes(args.study, held_out_seeds(args.scenes), args.poses, resolution)
    variants, baselines, shown_on_sheet = STUDIES[args.study]
    chosen = variants(path)
    names = list(chosen)
    summary = {}
    for region in REGIONS_SCORED:
        for metric in ("psnr", "ssim"):
            key = f"{metric} {region}"
            entry = {name: float(np.nanmean([r[f"{name} {key}"] for r in rows])) for name in names}
            for base in baselines:
                mean, interval, count = paired_interval(rows, f"{SHIPPED} {key}", f"{base} {key}")
                entry[f"gain over {base}"] = {"mean": mean, "interval_95": interval, "pairs": count}
            summary[key] = entry
    cost = frame_path_cost(path, chosen, timed, args.rounds)
    scenes = len({r["seed"] for r in rows})
    stem = "hidden_surface" if args.study == "borrowing" else f"hidden_surface_{args.study}"
    result = {"study": args.study, "scenes": scenes, "refused": refused, "pairs": len(rows), "summary": summary,
              "frame_path_ms": cost, "per_pair": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=1))
    title = {"borrowing": "Borrowing for hidden surface", "reach": "Reach past the bare body",
             "person": "A point shown only where it lands on the photo's person",
             "carry": "What pixels past the target body may carry from the photo",
             "hands": "The colour of hands the photo never showed",
             "limbs": "Whose pixels past the fitted body are carried"}[args.study]
    lines = [f"# {title}: {len(rows)} held-out pairs from {scenes} scenes "
             f"({refused} photos refused by the fit), fitted subjects, {resolution} px, deterministic generator", "",
             "Gain = shipped minus the other, paired per pair; 95 % interval by bootstrap over scenes.", "",
             "| measure | " + " | ".join(names) + " | " + " | ".join(f"shipped - {b}" for b in baselines) + " |",
             "|---|" + "---|" * (len(names) + len(baselines))]
    for key, entry in summary.items():
        gains = [entry[f"gain over {b}"] for b in baselines]
        lines.append(f"| {key} | " + " | ".join(f"{entry[n]:.3f}" for n in names) + " | " + " | ".join(
            f"{g['mean']:+.3f} [{g['interval_95'][0]:+.3f}, {g['interval_95'][1]:+.3f}]" for g in gains) + " |")
    lines += ["", f"Deterministic frame path per frame, eager PyTorch on this CPU, batch 1, median of {args.rounds} "
              "alternating rounds: " + ", ".join(f"{n} {ms:.1f} ms" for n, ms in cost.items())
              + f" (shipped / {baselines[0]} = {cost[SHIPPED] / cost[baselines[0]]:.2f}).", "",
              f"Sheet (`{stem}_sheet.png`), per row: photo, truth, " + ", ".join(shown_on_sheet) + "."]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    if sheet:
        Image.fromarray(np.concatenate(sheet, 0)).save(RESULTS / f"{stem}_sheet.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
