"""Export gain: ONNX Runtime (in-process) vs eager PyTorch, per stage and for the whole frame path.

Both run on this machine's CPU in the same process, interleaved round by
round, so load from elsewhere hits both alike. Reports median (min-max)
milliseconds per call and the ratio eager / ORT. Writes
``benchmarks/results/export_gain.csv`` and a bar plot.

    python benchmarks/export_gain.py [--resolution 256] [--rounds 15]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from bodydance.stages.registry import STAGE_MODULES
from bodydance_client.contract import FRAME_STAGES, ONNX_STAGES
from bodydance_export.pipeline import export_stage
from bodydance_export.sample_inputs import sample_inputs

RESULTS = Path(__file__).parent / "results"


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="export-gain-"))

    runners = {}
    for contract in ONNX_STAGES:
        version = work / contract.name / "1"
        export_stage(contract, args.resolution, version, fp16_check=False)
        module = STAGE_MODULES[contract.name](args.resolution).eval()
        feeds = sample_inputs(contract, args.resolution, batch=1, seed=5)
        sess = session(version / "model.onnx", args.threads)
        names = [i.name for i in sess.get_inputs()]
        tensors = [torch.from_numpy(v) for v in feeds.values()]
        runners[contract.name] = (
            lambda m=module, t=tensors: m(*t),
            lambda s=sess, f=feeds, n=names: s.run(None, {k: f[k] for k in n}),
        )

    def frame_path(kind: int):
        calls = [runners[c.name][kind] for c in FRAME_STAGES]
        return lambda: [call() for call in calls]
    runners["frame_path (3 stages)"] = (frame_path(0), frame_path(1))

    samples = {name: ([], []) for name in runners}
    with torch.inference_mode():
        for name, (eager, onnx_run) in runners.items():  # warm-up
            eager(), onnx_run()
        for _ in range(args.rounds):
            for name, (eager, onnx_run) in runners.items():
                samples[name][0].append(timed(eager))
                samples[name][1].append(timed(onnx_run))

    rows = []
    for name, (eager_ms, ort_ms) in samples.items():
        row = {"stage": name, "resolution": args.resolution,
               "eager_median_ms": statistics.median(eager_ms), "eager_min_ms": min(eager_ms),
               "eager_max_ms": max(eager_ms), "ort_median_ms": statistics.median(ort_ms),
               "ort_min_ms": min(ort_ms), "ort_max_ms": max(ort_ms)}
        row["gain_eager_over_ort"] = row["eager_median_ms"] / row["ort_median_ms"]
        rows.append(row)
        print(f"{name:24s} eager {row['eager_median_ms']:8.2f} ms  ORT {row['ort_median_ms']:8.2f} ms  "
              f"gain {row['gain_eager_over_ort']:.2f}x")
    out = RESULTS / f"export_gain_{args.resolution}.csv"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["eager_median_ms"] for r in rows], 0.4, label="eager PyTorch",
           yerr=[[r["eager_median_ms"] - r["eager_min_ms"] for r in rows], [r["eager_max_ms"] - r["eager_median_ms"] for r in rows]])
    ax.bar(x + 0.2, [r["ort_median_ms"] for r in rows], 0.4, label="ONNX Runtime",
           yerr=[[r["ort_median_ms"] - r["ort_min_ms"] for r in rows], [r["ort_max_ms"] - r["ort_median_ms"] for r in rows]])
    ax.set_xticks(x, [r["stage"] for r in rows], rotation=15, fontsize=8)
    ax.set_ylabel("ms per call (median, min-max)")
    ax.set_title(f"Export gain at {args.resolution}px, {args.threads} threads, batch 1")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"export_gain_{args.resolution}.png", dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
