"""Real footage where the refiner edits: is the learned frame better there than the deterministic one?

Issue 11 asks the learned generator to be better on the real footage "where the photo did not show
the surface". The served pipeline returns frames only, not the visibility it drew them with, but the
refiner edits nothing else: it leaves pixels the photo shows confidently as the warp copied them, and
edits what the photo did not show (plus the dancer's outer 4 px and never the head). So the region
compared is where the two generators' outputs differ: the dancer (the real frame's grown mask, as in
``real_footage.py``) and a difference above :data:`EDITED_LEVELS` in some channel. The rest of the
dancer is the same frame in both (checked: its PSNR difference is printed).

Two runs of the self-imitation benchmark, one per generator (the switch acts at export), keeping
their frames:

    python benchmarks/real_footage.py --stride 2 --skip-faces --label edits_deterministic --keep-frames /tmp/frames_det
    BODYDANCE_GENERATOR=learned python benchmarks/real_footage.py --stride 2 --skip-faces \\
        --label edits_learned --keep-frames /tmp/frames_learned
    python benchmarks/real_footage_edits.py /tmp/frames_det /tmp/frames_learned

Per frame: PSNR and SSIM on the edited pixels, learned minus deterministic; means over frames with a
95 % bootstrap interval over frames (consecutive frames are alike, so the interval is narrower than
an independent sample's), and per source frame. Writes benchmarks/results/real_footage_edits.{md,json}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import footage_metrics as M
from learned_generator import paired_interval

RESULTS = Path(__file__).parent / "results"
EDITED_LEVELS = 2  # a larger difference in some channel is the refiner's edit, not rounding


def source_rows(deterministic: Path, learned: Path):
    with np.load(deterministic) as a, np.load(learned) as b:
        if not np.array_equal(a["t"], b["t"]) or not np.array_equal(a["real"], b["real"]):
            raise SystemExit(f"{deterministic} and {learned} hold different frames: run both with the same --stride")
        rows = []
        for i, t in enumerate(a["t"]):
            ours_a, ours_b, real, person = a["ours"][i], b["ours"][i], a["real"][i], a["person"][i]
            difference = np.abs(ours_a.astype(np.int16) - ours_b.astype(np.int16)).max(-1)
            edited = person & (difference > EDITED_LEVELS)
            rest = person & ~edited
            # "seed" names the frame: paired_interval's bootstrap then draws frames
            row = {"seed": f"{deterministic.stem}:{int(t)}", "t": int(t),
                   "edited share of the dancer": float(edited.sum() / max(1, person.sum()))}
            for name, ours in (("deterministic", ours_a), ("learned", ours_b)):
                row[f"{name} psnr edited"] = M.psnr(ours, real, edited) if edited.any() else float("nan")
                row[f"{name} ssim edited"] = M.ssim(ours, real, edited) if edited.any() else float("nan")
                row[f"{name} psnr rest"] = M.psnr(ours, real, rest) if rest.any() else float("nan")
            rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("deterministic", type=Path, help="--keep-frames folder of the deterministic run")
    parser.add_argument("learned", type=Path, help="--keep-frames folder of the learned run")
    args = parser.parse_args()
    sources = sorted(p.name for p in args.deterministic.glob("source_*.npz"))
    if not sources:
        raise SystemExit(f"no source_*.npz in {args.deterministic}")
    per_source = {name.removeprefix("source_").removesuffix(".npz"): source_rows(args.deterministic / name, args.learned / name)
                  for name in sources}
    rows = [r for source in per_source.values() for r in source]
    usable = [r for r in rows if np.isfinite(r["learned psnr edited"])]
    summary = {}
    for measure in ("psnr edited", "ssim edited", "psnr rest"):
        gain, (low, high), _ = paired_interval(usable, f"learned {measure}", f"deterministic {measure}")
        summary[measure] = {"deterministic": float(np.nanmean([r[f"deterministic {measure}"] for r in usable])),
                            "learned": float(np.nanmean([r[f"learned {measure}"] for r in usable])),
                            "gain": (gain, low, high)}
    share = float(np.mean([r["edited share of the dancer"] for r in rows]))
    lines = [f"# Real footage where the refiner edits: {len(usable)} frames from {len(per_source)} sources", "",
             f"Sports2D self-imitation (`real_footage.py`), each compared frame from a deterministic and a learned run. "
             f"Edited: the dancer's grown mask where the two outputs differ by more than {EDITED_LEVELS} levels "
             f"(what the photo did not show confidently, the dancer's outline); {share:.0%} of the dancer on average. "
             "Gain = learned - deterministic per frame; mean over frames, 95 % bootstrap interval over frames.", "",
             "| measure | deterministic | learned | gain (95 %) |", "|---|---|---|---|"]
    for measure, s in summary.items():
        gain, low, high = s["gain"]
        lines.append(f"| {measure} | {s['deterministic']:.3f} | {s['learned']:.3f} | {gain:+.3f} [{low:+.3f}, {high:+.3f}] |")
    lines += ["", "Per source frame (PSNR on the edited pixels, deterministic / learned):", ""]
    for source, frames in per_source.items():
        kept = [r for r in frames if np.isfinite(r["learned psnr edited"])]
        lines.append(f"- {source}: {np.mean([r['deterministic psnr edited'] for r in kept]):.2f} / "
                     f"{np.mean([r['learned psnr edited'] for r in kept]):.2f} ({len(kept)} frames, "
                     f"{np.mean([r['edited share of the dancer'] for r in frames]):.0%} of the dancer edited)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "real_footage_edits.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "real_footage_edits.json").write_text(json.dumps(
        {"edited_levels": EDITED_LEVELS, "edited_share": share, "summary": summary, "per_source": per_source}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
