"""A trial refiner against the shipped one, paired per held-out pair, from two ``learned_generator.py`` runs.

``learned_generator.py --weights W --label L`` scores a trial on the same 208 held-out pairs as the
shipped refiner's run; this reads both runs' per-pair rows and reports the trial's gain over the
shipped refiner on the person, co-visible and never-shown surface, with 95 % bootstrap intervals
over scenes, and the same for ``temporal_stability.py`` runs when both exist.

    python benchmarks/learned_trials.py LABEL [--against ""] (the shipped run's label; "" by default)
Writes benchmarks/results/learned_trial_<LABEL>.md.
"""

from __future__ import annotations

import argparse
import json

from learned_generator import REGIONS, RESULTS, paired_interval


def merged_rows(trial: list, shipped: list, keys) -> list:
    """Rows of pairs present in both runs (by scene seed and pose), ``keys`` prefixed ``trial``/``shipped``."""
    by_pair = {(r["seed"], r["pose"]): r for r in shipped}
    rows = []
    for row in trial:
        other = by_pair.get((row["seed"], row["pose"]))
        if other is not None:
            rows.append({"seed": row["seed"], **{f"trial {k}": row[k] for k in keys},
                         **{f"shipped {k}": other[k] for k in keys}})
    return rows


def _result(name: str, label: str):
    path = RESULTS / f"{name}{f'_{label}' if label else ''}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("label", help="the trial's --label")
    parser.add_argument("--against", default="", help="the label of the run it is compared with ('' : the shipped one)")
    args = parser.parse_args()
    trial, shipped = _result("learned_generator", args.label), _result("learned_generator", args.against)
    if trial is None or shipped is None:
        raise SystemExit("run benchmarks/learned_generator.py for both first (the trial with --weights and --label)")
    keys = [f"learned {metric} {region}" for region in REGIONS for metric in ("psnr", "ssim")]
    rows = merged_rows(trial["per_pair"], shipped["per_pair"], keys)
    against = f"`{args.against}`" if args.against else "the shipped refiner"
    lines = [f"# Trial `{args.label}` against {against}: {len(rows)} held-out pairs in both runs", "",
             "Trial minus the other, paired per pair; 95 % interval by bootstrap over scenes.", "",
             "| measure | other | trial | trial - other | 95 % interval |", "|---|---|---|---|---|"]
    for key in keys:
        mean, (low, high), count = paired_interval(rows, f"trial {key}", f"shipped {key}")
        other = sum(r[f"shipped {key}"] for r in rows) / len(rows)
        lines.append(f"| {key.removeprefix('learned ')} | {other:.3f} | {other + mean:.3f} | {mean:+.3f} | "
                     f"[{low:+.3f}, {high:+.3f}] |")
    steady_trial, steady_shipped = _result("temporal_stability", args.label), _result("temporal_stability", args.against)
    if steady_trial is not None and steady_shipped is not None:
        temporal = ["learned", "learned change"]
        rows = merged_rows(steady_trial["rows"], steady_shipped["rows"], temporal)
        lines += ["", "Temporal stability (levels of 255, lower is steadier), the same way:", "",
                  "| measure | other | trial | trial - other | 95 % interval |", "|---|---|---|---|---|"]
        for key in temporal:
            mean, (low, high), _ = paired_interval(rows, f"trial {key}", f"shipped {key}")
            other = sum(r[f"shipped {key}"] for r in rows) / len(rows)
            name = "change error" if key.endswith("change") else "warp error"
            lines.append(f"| {name} | {other:.2f} | {other + mean:.2f} | {mean:+.2f} | [{low:+.2f}, {high:+.2f}] |")
    (RESULTS / f"learned_trial_{args.label}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
