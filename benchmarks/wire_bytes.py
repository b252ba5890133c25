"""Bytes on the wire per frame request, before and after slim frame requests (issue 12, part 3),
against the GPU compute time per frame: how many frames/s 1, 10 and 25 GbE can feed one GPU.

Bytes are tritonclient's serialised gRPC ``ModelInferRequest`` for one frame (the tensors plus names,
shapes and dtypes; the HTTP/2, TLS and TCP/IP framing around it add a few per cent more), and the
response's tensors (frame + frame_alpha). "Before" is the contract with issue 11's dtypes
(float32 images, int32 part labels, float32 depth); "after" is the committed contract.
The GPU time is read from ``results/gpu/gpu_frame_path.json`` (not re-measured here: no GPU on this machine).

    python benchmarks/wire_bytes.py   # -> benchmarks/results/wire_bytes.md, wire_bytes.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tritonclient.grpc import _utils

from bodydance_client import contract as C
from bodydance_client.transport import tensor_input

RESULTS = Path(__file__).resolve().parent / "results"
GPU_RESULTS = RESULTS / "gpu" / "gpu_frame_path.json"
LINKS_GBPS = (1, 10, 25)
# issue 11's dtypes of the tensors that slimmed
BEFORE = {"source_image": C.F32, "background": C.F32, "source_parsing": C.I32, "source_depth": C.F32}


def request_bytes(specs, resolution: int) -> int:
    inputs = [tensor_input(s, np.zeros((1,) + s.concrete_shape(resolution), s.dtype)) for s in specs]
    request = _utils._get_inference_request(
        model_name=C.FRAME_ENSEMBLE.name, inputs=inputs, model_version="", request_id="", outputs=None,
        sequence_id=0, sequence_start=False, sequence_end=False, priority=0, timeout=None, parameters=None)
    return request.ByteSize()


def response_bytes(resolution: int) -> int:
    return sum(int(np.prod(s.concrete_shape(resolution))) * np.dtype(s.dtype).itemsize for s in C.FRAME_ENSEMBLE.outputs)


def gpu_ms_per_frame():
    """{(resolution, label): ms per frame} from the committed GPU run, or {} when there is none."""
    if not GPU_RESULTS.exists():
        return {}
    run = json.loads(GPU_RESULTS.read_text())
    n = run["info"]["resolution"]
    out = {}
    for row in run["timings"]:
        label = f"{run['info']['device']}, {row['mode']}, batch {row['batch']}"
        out[(n, label)] = row["median_ms_per_frame"]
    return out


def main():
    before_specs = tuple(dataclass_with(s, BEFORE.get(s.name, s.dtype)) for s in C.FRAME_ENSEMBLE.inputs)
    rows = []
    for n in (256, 512):
        rows.append({"resolution": n, "before_bytes": request_bytes(before_specs, n),
                     "after_bytes": request_bytes(C.FRAME_ENSEMBLE.inputs, n),
                     "after_tensor_bytes": C.frame_request_bytes(n), "response_bytes": response_bytes(n)})
    gpu = gpu_ms_per_frame()
    lines = ["# Bytes on the wire per frame request (issue 12, part 3)", "",
             "Serialised gRPC request of one frame (tritonclient's `ModelInferRequest`; HTTP/2, TLS and TCP/IP "
             "framing add a few per cent). Frames/s = link payload rate / request bytes, each direction on its own "
             "(the response, frame + frame_alpha uint8, flows the other way).", "",
             "| N | before: float32 images, int32 labels, float32 depth | after: uint8 images, uint8 labels, float16 depth "
             "| response | frames/s at 1 / 10 / 25 GbE, before | after |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        fps = {k: [g * 1e9 / 8 / r[k] for g in LINKS_GBPS] for k in ("before_bytes", "after_bytes")}
        r["fps_before"], r["fps_after"] = fps["before_bytes"], fps["after_bytes"]
        lines.append(f"| {r['resolution']} | {r['before_bytes']:,} B ({r['before_bytes'] / 1e6:.2f} MB) "
                     f"| **{r['after_bytes']:,} B ({r['after_bytes'] / 1e6:.2f} MB)**, {r['before_bytes'] / r['after_bytes']:.2f}x less "
                     f"| {r['response_bytes']:,} B | " + " / ".join(f"{v:,.0f}" for v in fps["before_bytes"])
                     + " | " + " / ".join(f"{v:,.0f}" for v in fps["after_bytes"]) + " |")
    lines += ["", "GPU compute per frame (frame path, from `results/gpu/gpu_frame_path.json`):", ""]
    if gpu:
        lines += ["| N | run | ms / frame | frames/s | GbE links it needs, before / after |", "|---|---|---|---|---|"]
        by_n = {r["resolution"]: r for r in rows}
        for (n, label), ms in sorted(gpu.items(), key=lambda kv: kv[1]):
            fps = 1e3 / ms
            need = [fps * by_n[n][k] * 8 / 1e9 for k in ("before_bytes", "after_bytes")]
            lines.append(f"| {n} | {label} | {ms:.2f} | {fps:,.0f} | {need[0]:.1f} / {need[1]:.1f} Gbit/s |")
        lines += ["", "That GPU run is of the frame path before the mesh z-buffer (the capsule geometry) and in "
                  "PyTorch, not TensorRT; 256 x 256 was not measured on a GPU. Not re-measured: no GPU here."]
    else:
        lines.append("not measured (no `results/gpu/gpu_frame_path.json`).")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "wire_bytes.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "wire_bytes.json").write_text(json.dumps({"rows": rows, "gpu_ms_per_frame": {
        f"{n} {label}": ms for (n, label), ms in gpu.items()}}, indent=2))
    print("\n".join(lines))


def dataclass_with(spec, dtype):
    import dataclasses

    return dataclasses.replace(spec, dtype=dtype)


if __name__ == "__main__":
    main()
