"""Serving overhead, client pipelining and whole-video time, measured side by side in one run.

1. Serving overhead: the frame ensemble through Triton (gRPC, the SDK, one
   request at a time and with the in-flight window) vs the same three ONNX
   graphs chained in-process with ONNX Runtime (same thread settings).
2. Client pipelining: ``frames()`` with a window of 4 vs 1 request at a time.
3. Whole video: photo -> finished MP4 for a 120-frame template via ``animate``
   and via the ``bodydance animate`` CLI, and ``prepare()`` alone.
Rounds alternate between the variants so machine noise hits all of them; the
figures are medians with min-max, and every speed is quoted as a ratio.

    python benchmarks/serving_speed.py [--rounds 3] [--frames 48] [--resolution 512]
Writes benchmarks/results/serving_speed_<resolution>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bodydance.serving.repository import REPOSITORY_ROOT
from bodydance.serving.server import EmbeddedTritonServer
from bodydance_client import contract as C
from bodydance_client.sdk import BodyDanceClient
from bodydance_client.templates import Template, load_bundled, save_template
from bodydance_export.freshness import build_cpu_repository, ensure_exported

RESULTS = Path(__file__).parent / "results"
PHOTO = Path(__file__).resolve().parents[1] / "client" / "bodydance_client" / "data" / "astronaut.jpg"


class InProcessFramePath:
    """The frame ensemble's three ONNX graphs chained in this process (the no-server alternative)."""

    def __init__(self, repository: Path, threads: int = 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.sessions = [ort.InferenceSession(str(repository / s.name / "1" / "model.onnx"), options,
                                              providers=["CPUExecutionProvider"]) for s in C.FRAME_STAGES]

    def __call__(self, tensors: dict) -> np.ndarray:
        values = dict(tensors)
        for session in self.sessions:
            names = [o.name for o in session.get_outputs()]
            outs = session.run(names, {i.name: values[i.name] for i in session.get_inputs()})
            values.update(zip(names, outs))
        return values[C.FRAME.name][0]


def spread(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=48, help="frames per timed run")
    parser.add_argument("--resolution", type=int, default=C.DEFAULT_RESOLUTION)
    args = parser.parse_args()
    if args.resolution == C.DEFAULT_RESOLUTION:
        repository = REPOSITORY_ROOT / "cpu"
        ensure_exported(repository)
    else:
        repository = build_cpu_repository(Path(tempfile.mkdtemp(prefix="repo")) / "cpu", args.resolution)
    dance = load_bundled("disco")
    clip = Template("clip", dance.fps, dance.poses[:args.frames], dance.translations[:args.frames])
    long_dance = Template("long", dance.fps, np.concatenate([dance.poses] * 2)[:120],
                          np.concatenate([dance.translations] * 2)[:120])
    timings = {k: [] for k in ("in_process_fps", "triton_sequential_fps", "triton_window4_fps",
                               "prepare_s", "video_120_frames_s", "cli_video_120_frames_s")}
    with EmbeddedTritonServer(repository) as server, BodyDanceClient(server.grpc_url) as client:
        client.wait_until_ready()
        subject = client.prepare(PHOTO)
        local = InProcessFramePath(repository)
        frame_tensors = [{**{s.name: subject.tensors[s.name] for s in C.FRAME_SUBJECT_TENSORS},
                          "target_pose": clip.poses[i][None], "target_translation": clip.translations[i][None]}
                         for i in range(clip.num_frames)]
        list(client.frames(subject, clip, window=4))  # warm-up both paths
        local(frame_tensors[0])
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for tensors in frame_tensors:
                local(tensors)
            timings["in_process_fps"].append(clip.num_frames / (time.perf_counter() - t0))
            for window, key in ((1, "triton_sequential_fps"), (4, "triton_window4_fps")):
                t0 = time.perf_counter()
                count = sum(1 for _ in client.frames(subject, clip, window=window))
                timings[key].append(count / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            client.prepare(PHOTO)
            timings["prepare_s"].append(time.perf_counter() - t0)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                client.animate(PHOTO, long_dance, Path(tmp) / "video.mp4")
                timings["video_120_frames_s"].append(time.perf_counter() - t0)
                # the same through the CLI, as a user runs it (process start and imports included)
                template = save_template(long_dance, Path(tmp) / "long.npz")
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "bodydance_client.cli", "animate", str(PHOTO), "-t", str(template),
                                "-o", str(Path(tmp) / "cli.mp4"), "--contact-sheet", "", "--url", server.grpc_url],
                               check=True, capture_output=True)
                timings["cli_video_120_frames_s"].append(time.perf_counter() - t0)

    stats = {k: spread(v) for k, v in timings.items()}
    med = {k: v["median"] for k, v in stats.items()}
    ratios = {
        "serving_overhead (Triton window 4 / in-process ORT, fps)": med["triton_window4_fps"] / med["in_process_fps"],
        "serving_overhead (Triton sequential / in-process ORT, fps)": med["triton_sequential_fps"] / med["in_process_fps"],
        "client_pipelining (window 4 / window 1, fps)": med["triton_window4_fps"] / med["triton_sequential_fps"],
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"serving_speed_{args.resolution}"
    (RESULTS / f"{stem}.json").write_text(json.dumps({"stats": stats, "ratios": ratios,
                                                       "frames_per_run": args.frames, "rounds": args.rounds}, indent=2))
    lines = [f"# Serving speed at {args.resolution}px on this machine ({args.rounds} rounds, median [min-max])", "",
             "| measure | median | min | max |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['median']:.2f} | {v['min']:.2f} | {v['max']:.2f} |" for k, v in stats.items()]
    lines += ["", "| ratio | value | goal |", "|---|---|---|"]
    goals = {"serving_overhead (Triton window 4": ">= 0.90", "client_pipelining": ">= 1.6"}
    for k, v in ratios.items():
        goal = next((g for prefix, g in goals.items() if k.startswith(prefix)), "")
        lines.append(f"| {k} | {v:.2f} | {goal} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
