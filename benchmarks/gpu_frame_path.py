"""Frame path on a GPU in PyTorch: FP32 vs FP16 parity and per-frame latency.

Run by ``benchmarks/gpu_check.sh`` on a lent GPU machine (no TensorRT there;
TensorRT is timed only if importable). Modes: eager FP32, eager FP16, CUDA
graph replay of each, and torch.compile FP16 when it compiles in time.
Writes ``gpu_frame_path.json`` and ``gpu_frame_path.csv`` into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bodydance.stages.registry import FramePath
from bodydance_client.contract import FRAME_ENSEMBLE
from bodydance_export.sample_inputs import sample_inputs


def realistic_inputs(resolution: int, batch: int, device, dtype):
    arrays = sample_inputs(FRAME_ENSEMBLE, resolution, batch, seed=3)
    out = []
    for spec in FRAME_ENSEMBLE.inputs:
        t = torch.from_numpy(arrays[spec.name]).to(device)
        out.append(t.to(dtype) if t.is_floating_point() else t)
    return out


def time_callable(fn, iters: int, device) -> list:
    """Milliseconds per call, each call timed alone (CUDA events on GPU)."""
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def cuda_graph(module, inputs):
    static_out = None
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            module(*inputs)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = module(*inputs)
    return graph.replay, static_out


def mixed_precision(fp32: FramePath, fp16: FramePath):
    """The deployed split: geometry in FP32 (depth tests), parsing prior and generator in FP16."""
    def run(source_image, betas, source_pose, camera, source_parsing, source_depth, region_style, background,
            target_pose, target_translation):
        flow, visibility, parts = fp32.geometry(betas, source_pose, camera, source_depth, source_parsing, target_pose,
                                                target_translation)
        parsing = fp16.parsing(source_parsing, parts, flow.half())
        # uint8 images as on the wire: the generator converts them itself
        return fp16.generator(source_image, background, region_style.half(), flow.half(),
                              visibility.half(), parsing)
    return run


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict:
    diff = np.abs(reference.astype(np.int32) - candidate.astype(np.int32))
    return {"mean_abs_levels": float(diff.mean()), "max_abs_levels": int(diff.max()),
            "within_2_levels": float((diff <= 2).mean())}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu"))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.backends.cudnn.benchmark = True

    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
            "torch": torch.__version__, "resolution": args.resolution, "iters": args.iters}
    rows, parities = [], {}
    fp32 = FramePath(args.resolution).to(device).eval()
    fp16 = FramePath(args.resolution).to(device).eval().half()
    for batch in [int(b) for b in args.batches.split(",")]:
        in32 = realistic_inputs(args.resolution, batch, device, torch.float32)
        in16 = realistic_inputs(args.resolution, batch, device, torch.float16)
        mixed = mixed_precision(fp32, fp16)
        with torch.inference_mode():
            ref = fp32(*in32)[0].cpu().numpy()
            half = fp16(*in16)[0].cpu().numpy()
            mixed_out = mixed(*in32)[0].cpu().numpy()
        parities[f"batch{batch}_fp16_vs_fp32"] = parity(ref, half)
        parities[f"batch{batch}_mixed_vs_fp32"] = parity(ref, mixed_out)
        modes = {"eager_fp32": (lambda m=fp32, x=in32: m(*x)), "eager_fp16": (lambda m=fp16, x=in16: m(*x)),
                 "eager_mixed": (lambda m=mixed, x=in32: m(*x))}
        if device.type == "cuda":
            with torch.inference_mode():
                for name, module, inputs in (("cudagraph_fp32", fp32, in32), ("cudagraph_fp16", fp16, in16)):
                    try:
                        replay, _ = cuda_graph(module, inputs)
                        modes[name] = replay
                    except Exception as err:  # report, keep going
                        info[f"{name}_batch{batch}_error"] = repr(err)[:300]
        if args.compile and device.type == "cuda":
            try:
                t0 = time.perf_counter()
                compiled = torch.compile(fp16, mode="max-autotune-no-cudagraphs", dynamic=False)
                with torch.inference_mode():
                    out = compiled(*in16)
                info[f"compile_fp16_batch{batch}_seconds"] = round(time.perf_counter() - t0, 1)
                parities[f"batch{batch}_compiled_fp16_vs_fp32"] = parity(ref, out.cpu().numpy())
                modes["compiled_fp16"] = lambda m=compiled, x=in16: m(*x)
            except Exception as err:
                info[f"compile_batch{batch}_error"] = repr(err)[:300]
        with torch.inference_mode():
            for name, fn in modes.items():
                time_callable(fn, args.warmup, device)
                ms = time_callable(fn, args.iters, device)
                per_frame = [t / batch for t in ms]
                rows.append({"mode": name, "batch": batch, "median_ms_per_frame": statistics.median(per_frame),
                             "min_ms_per_frame": min(per_frame), "max_ms_per_frame": max(per_frame),
                             "frames_per_s": 1e3 / statistics.median(per_frame)})
                print(f"batch {batch:2d} {name:16s} {statistics.median(per_frame):8.3f} ms/frame "
                      f"(min {min(per_frame):.3f}, max {max(per_frame):.3f})", flush=True)
    base = {r["batch"]: r["median_ms_per_frame"] for r in rows if r["mode"] == "eager_fp32"}
    for r in rows:
        r["speedup_vs_eager_fp32"] = base[r["batch"]] / r["median_ms_per_frame"]
    with open(args.out / "gpu_frame_path.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "gpu_frame_path.json").write_text(json.dumps({"info": info, "parity": parities, "timings": rows}, indent=2))
    print(json.dumps(parities, indent=2))


if __name__ == "__main__":
    main()
