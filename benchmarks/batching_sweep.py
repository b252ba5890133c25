"""Dynamic batching on/off x 1 or 2 instances per frame-path stage: perf_analyzer concurrency sweeps.

Each variant is the committed cpu repository with only the frame stages'
batching and instance count changed (through the same typed descriptions the
configs are generated from), served by its own embedded tritonserver, swept
with perf_analyzer over concurrency 1..8 on the frame ensemble.

    python benchmarks/batching_sweep.py [--concurrency 1,2,4,8]
Writes benchmarks/results/batching_sweep.csv and batching_sweep.png (latency vs throughput).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import shutil
import tempfile
from pathlib import Path

from bodydance.serving.model_configs import describe_models, render, to_model_config
from bodydance.serving.repository import REPOSITORY_ROOT, expected_files
from bodydance.serving.server import EmbeddedTritonServer
from bodydance_client import contract as C
from bodydance_client.images import load_photo
from bodydance_client.sdk import BodyDanceClient
from bodydance_client.templates import load_bundled
from bodydance_export.freshness import ensure_exported
from perf_analyzer_runs import PHOTO, RESULTS, run_perf_analyzer, write_inputs

# name: (dynamic batching, instances per stage, max queue delay us); delay 0 batches only what is already queued
VARIANTS = {
    "dynamic batching 2 ms, 1 instance": (True, 1, 2000),
    "no batching, 1 instance": (False, 1, 0),
    "dynamic batching 2 ms, 2 instances": (True, 2, 2000),
    "no batching, 2 instances": (False, 2, 0),
    "dynamic batching 0 ms, 2 instances": (True, 2, 0),
}


def variant_repository(target: Path, dynamic: bool, instances: int, delay_us: int) -> Path:
    source = REPOSITORY_ROOT / "cpu"
    for rel, content in expected_files("cpu").items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    for onnx in source.glob("*/1/model.onnx"):
        shutil.copy2(onnx, target / onnx.relative_to(source))
    for desc in describe_models():
        if desc.kind == "onnx" and desc.contract.frame_path:
            batching = dataclasses.replace(desc.batching, dynamic=dynamic, max_queue_delay_us=delay_us,
                                           preferred=desc.batching.preferred if delay_us else ())
            changed = dataclasses.replace(desc, batching=batching, instances=instances)
            (target / desc.contract.name / "config.pbtxt").write_text(render(to_model_config(changed, "cpu")))
    return target


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,2,4,8")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    ensure_exported(REPOSITORY_ROOT / "cpu")
    work = Path(tempfile.mkdtemp(prefix="sweep-"))
    photo, dance = load_photo(PHOTO), load_bundled("disco")
    rows = []
    for name, (dynamic, instances, delay_us) in VARIANTS.items():
        repo = variant_repository(work / name.replace(" ", "_").replace(",", ""), dynamic, instances, delay_us)
        with EmbeddedTritonServer(repo) as server:
            with BodyDanceClient(server.grpc_url) as client:
                subject = client.prepare(photo)
            arrays = {s.name: subject.tensors[s.name][0] for s in C.FRAME_SUBJECT_TENSORS}
            arrays.update(target_pose=dance.poses[45], target_translation=dance.translations[45])
            data = write_inputs(work / "data", arrays)
            for row in run_perf_analyzer(C.FRAME_ENSEMBLE.name, server.grpc_url, data, work / "pa.csv", levels,
                                         requests_per_window=16, stability_percentage=50):
                row["variant"] = name
                rows.append(row)
                print(f"{name:32s} c={row['Concurrency']:>2s} {float(row['Inferences/Second']):6.2f} fps "
                      f"p50 {int(row['p50 latency']) / 1e3:6.0f} ms p99 {int(row['p99 latency']) / 1e3:6.0f} ms", flush=True)
    RESULTS.mkdir(exist_ok=True)
    keys = ["variant", "Concurrency", "Inferences/Second", "p50 latency", "p90 latency", "p95 latency", "p99 latency"]
    with open(RESULTS / "batching_sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in VARIANTS:
        sel = [r for r in rows if r["variant"] == name]
        fps = [float(r["Inferences/Second"]) for r in sel]
        axes[0].plot(fps, [int(r["p50 latency"]) / 1e3 for r in sel], "o-", label=name)
        axes[1].plot(fps, [int(r["p99 latency"]) / 1e3 for r in sel], "o-", label=name)
    for ax, q in zip(axes, ("p50", "p99")):
        ax.set_xlabel("throughput (frames/s)")
        ax.set_ylabel(f"{q} latency (ms)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"bodydance_frame at {C.DEFAULT_RESOLUTION}px, concurrency {args.concurrency} (2 CPU cores)")
    fig.tight_layout()
    fig.savefig(RESULTS / "batching_sweep.png", dpi=110)
    print(f"wrote {RESULTS / 'batching_sweep.csv'}")


if __name__ == "__main__":
    main()
