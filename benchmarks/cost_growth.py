"""How time and memory per frame grow with resolution and with video length.

Resolution: the frame path (three ONNX graphs, exported at each size) run
in-process by ONNX Runtime, each size in its own subprocess so its peak RSS
is its own. Length: whole videos of 30, 60 and 120 frames through the
embedded server and the SDK; wall time and the client's peak RSS. Nothing
should grow worse than linearly in frame count (per-frame time and memory flat).

    python benchmarks/cost_growth.py
Writes benchmarks/results/cost_growth.json and cost_growth.png.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
RESOLUTIONS = (128, 256, 384, 512)
LENGTHS = (30, 60, 120)

_ONE_RESOLUTION = r"""
import json, resource, statistics, sys, time
from pathlib import Path
import onnxruntime as ort
from bodydance_client.contract import FRAME_ENSEMBLE, FRAME_STAGES
from bodydance_export.sample_inputs import sample_inputs
n, work = int(sys.argv[1]), Path(sys.argv[2])
def status_mb(key):
    line = next(l for l in open("/proc/self/status") if l.startswith(key))
    return int(line.split()[1]) / 1024
before = status_mb("VmHWM")
opts = ort.SessionOptions(); opts.intra_op_num_threads = 2
sessions = [ort.InferenceSession(str(work / c.name / "1" / "model.onnx"), opts, providers=["CPUExecutionProvider"]) for c in FRAME_STAGES]
values = sample_inputs(FRAME_ENSEMBLE, n, batch=1, seed=0)
def run():
    v = dict(values)
    for s in sessions:
        names = [o.name for o in s.get_outputs()]
        v.update(zip(names, s.run(names, {i.name: v[i.name] for i in s.get_inputs()})))
run()
times = []
for _ in range(8):
    t0 = time.perf_counter(); run(); times.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({"resolution": n, "ms_per_frame": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
                  "peak_rss_mb": status_mb("VmHWM"), "rss_before_sessions_mb": before}))
"""


def by_resolution():
    """Export first (torch's memory stays in this process), then time and measure ORT alone in a child."""
    from bodydance_client.contract import FRAME_STAGES
    from bodydance_export.pipeline import export_stage

    rows = []
    for n in RESOLUTIONS:
        work = Path(tempfile.mkdtemp(prefix=f"growth{n}-"))
        for contract in FRAME_STAGES:
            export_stage(contract, n, work / contract.name / "1", fp16_check=False)
        out = subprocess.run([sys.executable, "-c", _ONE_RESOLUTION, str(n), str(work)], capture_output=True,
                             text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return rows


def _rss_mb() -> float:
    line = next(line for line in open("/proc/self/status") if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def by_length():
    from bodydance.serving.repository import REPOSITORY_ROOT
    from bodydance.serving.server import EmbeddedTritonServer
    from bodydance_client.sdk import BodyDanceClient
    from bodydance_client.templates import Template, load_bundled
    from bodydance_export.freshness import ensure_exported

    photo = Path(__file__).resolve().parents[1] / "client" / "bodydance_client" / "data" / "astronaut.jpg"
    dance = load_bundled("disco")
    rows = []
    ensure_exported(REPOSITORY_ROOT / "cpu")
    with EmbeddedTritonServer(REPOSITORY_ROOT / "cpu") as server, BodyDanceClient(server.grpc_url) as client:
        client.wait_until_ready()
        client.animate(photo, Template("warm", dance.fps, dance.poses[:8], dance.translations[:8]),
                       Path(tempfile.mkdtemp()) / "warm.mp4")
        for length in LENGTHS:
            poses = np.concatenate([dance.poses] * 2)[:length]
            shifts = np.concatenate([dance.translations] * 2)[:length]
            t0 = time.perf_counter()
            client.animate(photo, Template(f"len{length}", dance.fps, poses, shifts), Path(tempfile.mkdtemp()) / "v.mp4")
            seconds = time.perf_counter() - t0
            rows.append({"frames": length, "seconds": seconds, "ms_per_frame": seconds / length * 1e3,
                         "client_rss_after_mb": _rss_mb()})
            print(rows[-1], flush=True)
    return rows


def main():
    resolution_rows, length_rows = by_resolution(), by_length()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cost_growth.json").write_text(json.dumps({"by_resolution": resolution_rows, "by_length": length_rows},
                                                         indent=2))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    pixels = [r["resolution"] ** 2 / 1e3 for r in resolution_rows]
    ax = axes[0]
    ax.errorbar(pixels, [r["ms_per_frame"] for r in resolution_rows],
                yerr=[[r["ms_per_frame"] - r["min_ms"] for r in resolution_rows],
                      [r["max_ms"] - r["ms_per_frame"] for r in resolution_rows]], fmt="o-", label="ms per frame")
    ax.set_xlabel("pixels per frame (thousands)")
    ax.set_ylabel("ms per frame (ORT in-process)")
    twin = ax.twinx()
    twin.plot(pixels, [r["peak_rss_mb"] for r in resolution_rows], "s--", color="tab:red", label="peak RSS")
    twin.set_ylabel("peak RSS of the ORT process (MB)", color="tab:red")
    ax.set_title("by resolution (" + ", ".join(str(r["resolution"]) for r in resolution_rows) + " px)")
    ax = axes[1]
    ax.plot([r["frames"] for r in length_rows], [r["seconds"] for r in length_rows], "o-", label="seconds per video")
    ax.set_xlabel("frames in the video")
    ax.set_ylabel("wall seconds (photo -> mp4)")
    twin = ax.twinx()
    twin.plot([r["frames"] for r in length_rows], [r["client_rss_after_mb"] for r in length_rows], "s--", color="tab:red")
    twin.set_ylabel("client RSS after the video (MB)", color="tab:red")
    ax.set_title("by video length (256 px, through Triton)")
    fig.tight_layout()
    fig.savefig(RESULTS / "cost_growth.png", dpi=110)


if __name__ == "__main__":
    main()
