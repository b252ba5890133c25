"""Learned style generator against the deterministic one on held-out synthetic pairs, in one run.

Every held-out shard (scene seeds from ``scenes.HELD_OUT_SEED``, never trained on) holds the
fitted subject's generator inputs for several target poses and the scene's true render of each.
Both generators get the same inputs: the deterministic stand-in (``StyleGenerator()``) and the one
with the committed refiner (``StyleGenerator(refiner)``). Scores, per pair, on the truth's person,
on its co-visible part (surface the photo shows) and on the rest (surface it never showed):
PSNR and SSIM as ``synthetic_transfer.py`` takes them. Differences are paired; their 95 %
intervals come from a bootstrap over scenes (pairs of one scene are not independent).

A reference that is not a generator: the deterministic frame under a Gaussian blur of
:data:`BLUR_SIGMA_PX`, scored the same way. On fitted pairs the fitted body stands some
centimetres off the true one, so PSNR rewards smoothing across the misplaced edges; the blur
shows how much of a gain that alone buys (and it blurs the surface the photo shows, which the
refiner is built never to do).

Also the per-frame cost on this CPU: the frame path's three ONNX models in ONNX Runtime, with
each generator exported from PyTorch in this run, rounds alternating; and what the refiner mixes
where it may edit (each candidate's mean weight, on the dancer and on the rim outside them). Weights
trained with style codes (``train --style-codes``) are scored with their codes in the region style.

    python benchmarks/learned_generator.py [--pairs 0 (all)] [--rounds 20] [--weights W --label L]
Writes benchmarks/results/learned_generator.{md,json} and learned_generator_sheet.png.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from bodydance.stages.generator_switch import WEIGHTS
from bodydance.stages.refiner import edit_reach, read_code_encoder, read_refiner
from bodydance.stages.style import StyleGenerator, generator_planes, part_planes
from bodydance.stages.style_codes import CODE_DIMS, parts_onehot, with_codes
from bodydance.training.pairs import DEFAULT_FOLDER as DATA
from bodydance.training.pairs import GENERATOR_INPUTS, has_source_parsing, load_shards
from bodydance_client import contract as C
from synthetic_transfer import region_scores

RESULTS = Path(__file__).parent / "results"
REGIONS = ("person", "covisible", "unseen")
BLUR_SIGMA_PX = 2.0
BLURRED = "deterministic, blurred"


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside (results name weights without this machine's root)."""
    root = Path(__file__).resolve().parents[1]
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


def shard_region_style(shard: dict, encoder=None) -> torch.Tensor:
    """``[1,P,16]``: the shard's deterministic region codes, with the learned style codes of ``encoder``
    (:class:`~bodydance.stages.style_codes.RegionCodeEncoder`, a refiner trained with codes) as
    ``style_encoder`` serves them (the deterministic generator does not read them)."""
    style = torch.from_numpy(shard["region_style"])[None]
    if encoder is None:
        return style
    if not has_source_parsing(shard):
        raise SystemExit("these shards hold no source_parsing, which the style codes read: run "
                         "`python -m bodydance.training data` (it remakes them)")
    source = torch.from_numpy(shard["source_image"])[None].float() / 255.0
    with torch.no_grad():
        codes, _ = encoder(source, parts_onehot(torch.from_numpy(shard["source_parsing"])[None]))
    return with_codes(style, codes)


def generator_inputs(shard: dict, k: int, prefix: str = "", region_style=None) -> dict:
    """The style generator's inputs for pose ``k`` of a shard (``prefix`` ``next_``: its next frame's),
    ``region_style`` :func:`shard_region_style`'s (the shard's own when None)."""
    return {"source_image": torch.from_numpy(shard["source_image"])[None],
            "background": torch.from_numpy(shard["background"])[None],
            "region_style": shard_region_style(shard) if region_style is None else region_style,
            "correspondence_flow": torch.from_numpy(shard[prefix + "flow"][k].astype(np.float32))[None],
            "source_visibility": torch.from_numpy(shard[prefix + "visibility"][k].astype(np.float32))[None],
            "target_parsing": torch.from_numpy(shard[prefix + "target_parsing"][k].astype(np.int32))[None]}


def score_pairs(shards, generators, limit: int, encoder=None):
    rows, sheet = [], []
    for shard in shards:
        style = shard_region_style(shard, encoder)
        for k in range(len(shard["frame"])):
            if limit and len(rows) >= limit:
                return rows, sheet
            inputs = generator_inputs(shard, k, region_style=style)
            truth = shard["truth"][k]
            person = shard["truth_person"][k]
            masks = {"person": person, "covisible": person & shard["covisible"][k],
                     "unseen": person & ~shard["covisible"][k]}
            row = {"seed": int(shard["seed"]), "pose": k}
            frames = {}
            with torch.no_grad():
                for name, generator in generators.items():
                    frames[name] = generator(*(inputs[n] for n in GENERATOR_INPUTS))[0][0].numpy()
                    for region in REGIONS:
                        psnr, ssim = region_scores(frames[name], truth, masks[region])
                        row[f"{name} psnr {region}"], row[f"{name} ssim {region}"] = psnr, ssim
            blurred = cv2.GaussianBlur(frames["deterministic"].astype(np.float32), (0, 0), BLUR_SIGMA_PX)
            blurred = np.clip(blurred + 0.5, 0, 255).astype(np.uint8)
            for region in REGIONS:
                row[f"{BLURRED} psnr {region}"], row[f"{BLURRED} ssim {region}"] = region_scores(blurred, truth, masks[region])
            rows.append(row)
            if len(sheet) < 8 and k == 0:
                sheet.append(np.concatenate([shard["source_image"].transpose(1, 2, 0), truth,
                                             frames["deterministic"], frames["learned"]], 1))
    return rows, sheet


def candidate_shares(shards, refiner, encoder=None, limit: int = 0) -> dict:
    """What the refiner mixes where it may edit: each of its candidates' mean weight over the pixels of
    its reach (:func:`~bodydance.stages.refiner.edit_reach`), on the dancer and on the rim outside them,
    over all pairs (read from the shard's 8-bit deterministic frame, which the served refiner sees
    before rounding). -> {"dancer" | "rim": {candidate: share}, "reach on the dancer": share of the
    dancer's pixels within reach}."""
    totals = {"dancer": torch.zeros(len(refiner.candidates)), "rim": torch.zeros(len(refiner.candidates))}
    counts, dancer_pixels, pairs = {"dancer": 0.0, "rim": 0.0}, 0.0, 0
    for shard in shards:
        style = shard_region_style(shard, encoder)
        for k in range(len(shard["frame"])):
            if limit and pairs >= limit:
                break
            pairs += 1
            inputs = generator_inputs(shard, k, region_style=style)
            source, background = (inputs[name].float() / 255.0 for name in ("source_image", "background"))
            planes = generator_planes(source, background, style, inputs["correspondence_flow"],
                                      inputs["source_visibility"], inputs["target_parsing"])
            seen, onehot, refilled, part_style, generated = planes.refiner_inputs()
            codes = (part_planes(style[..., CODE_DIMS], onehot),) if refiner.code_dim else ()
            frame = torch.from_numpy(shard["frame"][k]).permute(2, 0, 1)[None].float() / 255.0
            with torch.no_grad():
                weights = refiner.mixing_weights(frame, background, seen, onehot, refilled, part_style, *codes)
            _, reach = edit_reach(seen, generated, onehot)
            dancer = planes.person
            for name, where in (("dancer", reach * dancer), ("rim", reach * (1.0 - dancer))):
                totals[name] += (weights * where).sum((0, 2, 3))
                counts[name] += float(where.sum())
            dancer_pixels += float(dancer.sum())
    shares = {name: {c: float(t) / max(counts[name], 1.0) for c, t in zip(refiner.candidates, totals[name])}
              for name in totals}
    shares["reach on the dancer"] = counts["dancer"] / max(dancer_pixels, 1.0)
    return shares


def paired_interval(rows, key_a: str, key_b: str, resamples: int = 2000, seed: int = 0):
    """Mean of (a - b) over pairs with both finite, and its 95 % bootstrap interval over scenes."""
    by_scene = {}
    for r in rows:
        a, b = r[key_a], r[key_b]
        if np.isfinite(a) and np.isfinite(b):
            by_scene.setdefault(r["seed"], []).append(a - b)
    scenes = list(by_scene.values())
    if not scenes:
        return float("nan"), (float("nan"), float("nan")), 0
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(resamples):
        picked = [scenes[i] for i in rng.integers(0, len(scenes), len(scenes))]
        means.append(np.mean(np.concatenate(picked)))
    flat = np.concatenate(scenes)
    return float(flat.mean()), (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))), len(flat)


def frame_path_cost(shards, generators, rounds: int):
    """Median ms per frame (batch 1) of body_geometry + parsing_prior + style_generator in ONNX Runtime,
    one thread per stage as served."""
    import onnxruntime as ort

    from bodydance.serving.repository import REPOSITORY_ROOT
    from bodydance_export.freshness import ensure_exported
    from bodydance_export.sample_inputs import sample_inputs
    from bodydance_export.steps import export_onnx

    def served_session(path: Path):
        # As the cpu repository runs each stage (serving/onnx_stage_model.py, one thread per instance).
        # ORT's defaults (a spinning thread pool per session) made three sessions fight over two
        # cores: measured that way the learned path was 2.26x, as served 1.61x.
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    repository = REPOSITORY_ROOT / "cpu"
    ensure_exported(repository)  # body_geometry and parsing_prior as this tree makes them
    sessions = {name: served_session(repository / name / "1" / "model.onnx")
                for name in (C.BODY_GEOMETRY.name, C.PARSING_PRIOR.name)}
    resolution = C.DEFAULT_RESOLUTION
    with tempfile.TemporaryDirectory() as tmp:
        for name, generator in generators.items():
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(generator.eval(), C.STYLE_GENERATOR, sample_inputs(C.STYLE_GENERATOR, resolution, batch=1, seed=1), path)
            sessions[name] = served_session(path)
        shard = shards[0]
        geometry_feed = {
            "betas": np.zeros((1, 10), np.float32), "source_pose": np.zeros((1, 24, 3), np.float32),
            "camera": np.array([[0.9, 0.0, 0.05]], np.float32),
            "source_depth": np.full((1, 1, resolution, resolution), C.EMPTY_DEPTH_M, np.float16),
            "source_parsing": np.ones((1, 1, resolution, resolution), np.uint8),
            "target_pose": np.zeros((1, 24, 3), np.float32), "target_translation": np.zeros((1, 3), np.float32)}
        geometry_feed = {i.name: geometry_feed[i.name] for i in sessions[C.BODY_GEOMETRY.name].get_inputs()}
        timings = {name: [] for name in generators}
        for _ in range(rounds):
            for name in generators:
                start = time.perf_counter()
                flow, visibility, parts = sessions[C.BODY_GEOMETRY.name].run(None, geometry_feed)
                parsing_feed = {"source_parsing": np.zeros((1, 1, resolution, resolution), np.uint8),
                                "target_parts": parts, "correspondence_flow": flow}
                parsing = sessions[C.PARSING_PRIOR.name].run(
                    None, {i.name: parsing_feed[i.name] for i in sessions[C.PARSING_PRIOR.name].get_inputs()})[0]
                feed = {"source_image": shard["source_image"][None], "background": shard["background"][None],
                        "region_style": shard["region_style"][None], "correspondence_flow": flow,
                        "source_visibility": visibility, "target_parsing": parsing}
                sessions[name].run(None, {i.name: feed[i.name] for i in sessions[name].get_inputs()})
                timings[name].append((time.perf_counter() - start) * 1000)
    return {name: float(np.median(t)) for name, t in timings.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=DATA / "held_out")
    parser.add_argument("--pairs", type=int, default=0, help="score at most this many pairs (0: all)")
    parser.add_argument("--rounds", type=int, default=20, help="timing rounds per generator")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="the refiner's weights (a trial's)")
    parser.add_argument("--label", default="", help="results go to learned_generator_<label>.* (a trial's)")
    args = parser.parse_args()
    if not args.weights.exists():
        raise SystemExit(f"no trained refiner at {args.weights}: run `python -m bodydance.training train`")
    refiner = read_refiner(args.weights)
    stem = "learned_generator" + (f"_{args.label}" if args.label else "")
    shards = load_shards(args.folder)
    if not shards:
        raise SystemExit(f"no held-out shards in {args.folder}: run `python -m bodydance.training data`")
    generators = {"deterministic": StyleGenerator(), "learned": StyleGenerator(refiner)}
    encoder = read_code_encoder(args.weights)
    rows, sheet = score_pairs(shards, generators, args.pairs, encoder)
    shares = candidate_shares(shards, refiner, encoder, args.pairs)
    summary = {}
    for region in REGIONS:
        for metric in ("psnr", "ssim"):
            key = f"{metric} {region}"
            mean, interval, count = paired_interval(rows, f"learned {key}", f"deterministic {key}")
            blur_gain, blur_interval, _ = paired_interval(rows, f"{BLURRED} {key}", f"deterministic {key}")
            summary[key] = {"deterministic": float(np.nanmean([r[f"deterministic {key}"] for r in rows])),
                            "learned": float(np.nanmean([r[f"learned {key}"] for r in rows])),
                            "gain": mean, "gain_95": interval, "pairs": count,
                            "blurred": float(np.nanmean([r[f"{BLURRED} {key}"] for r in rows])),
                            "blurred_gain": blur_gain, "blurred_gain_95": blur_interval}
    cost = frame_path_cost(shards, generators, args.rounds)
    code_parameters = 0 if encoder is None else sum(p.numel() for p in encoder.parameters())
    scenes = len({r["seed"] for r in rows})
    result = {"pairs": len(rows), "scenes": scenes, "summary": summary, "frame_path_ms": cost,
              "cost_ratio": cost["learned"] / cost["deterministic"], "refiner_parameters": refiner.parameter_count(),
              "code_encoder_parameters": code_parameters, "candidate_shares": shares,
              "per_pair": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Learned vs deterministic style generator: {len(rows)} held-out pairs from {scenes} scenes "
             f"(fitted subjects, {C.DEFAULT_RESOLUTION} px)", "",
             "Gain = learned - deterministic, paired per pair; 95 % interval by bootstrap over scenes.", "",
             f"Reference, not a generator: the deterministic frame blurred (Gaussian, sigma {BLUR_SIGMA_PX:g} px), "
             "gain over the deterministic frame the same way.", "",
             "| measure | deterministic | learned | gain | 95 % interval | pairs | blurred (reference) | its gain, 95 % interval |",
             "|---|---|---|---|---|---|---|---|"]
    for key, s in summary.items():
        lines.append(f"| {key} | {s['deterministic']:.3f} | {s['learned']:.3f} | {s['gain']:+.3f} | "
                     f"[{s['gain_95'][0]:+.3f}, {s['gain_95'][1]:+.3f}] | {s['pairs']} | {s['blurred']:.3f} | "
                     f"{s['blurred_gain']:+.3f} [{s['blurred_gain_95'][0]:+.3f}, {s['blurred_gain_95'][1]:+.3f}] |")
    lines += ["", f"Frame path per frame, ONNX Runtime on this CPU, batch 1, one thread per stage as the cpu repository "
              f"serves it, median of {args.rounds} alternating rounds: "
              f"deterministic {cost['deterministic']:.1f} ms, learned {cost['learned']:.1f} ms "
              f"(ratio {result['cost_ratio']:.2f}; goal <= 2). Refiner: {refiner.parameter_count()} parameters"
              + (f", style code encoder (once per photo, in style_encoder): {code_parameters}." if code_parameters else "."), "",
              f"What the refiner mixes where it may edit (mean weight, all pairs), on the dancer "
              f"({shares['reach on the dancer']:.0%} of the dancer's pixels are within its reach): "
              + ", ".join(f"{name} {share:.1%}" for name, share in shares["dancer"].items())
              + "; on its rim outside them: " + ", ".join(f"{name} {share:.1%}" for name, share in shares["rim"].items())
              + " (there the frame is mostly the plate already).", "",
              f"Refiner weights: `{shown_path(args.weights)}`. Sheet (`{stem}_sheet.png`), per row: photo, truth, deterministic, learned."]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    if sheet:
        Image.fromarray(np.concatenate(sheet, 0)).save(RESULTS / f"{stem}_sheet.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
