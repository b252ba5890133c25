"""FLOPs and bytes per frame for each stage, counted on the exported ONNX graphs, and the bounds they imply.

Counting rules (per output element unless said): elementwise ops 1 FLOP,
transcendental (Sin, Cos, Sqrt, Exp, Log, Pow) 4, GridSample 20 (bilinear:
4 taps, weights, coordinates), pooling kernel-size, reductions 1 per input
element, MatMul/Gemm 2*M*N*K, Einsum 2 x the product of all index extents;
shape and data-movement ops 0. Bytes: the graph's inputs, outputs and weights
(the minimum any implementation must move, "ideal") and the sum of every
node's inputs and outputs (no fusion at all, "unfused").

Bounds: T4 (65 TFLOP/s FP16, 320 GB/s), H200 (~790 TFLOP/s bf16/FP16 dense
as measured on a lent H200, 4.8 TB/s HBM3e), and this machine, whose peak
FLOP/s (float32 matmul) and memory bandwidth (large copy) are measured here.
The measured CPU time per frame stage comes from ONNX Runtime in-process.

    python benchmarks/limits.py [--resolution 256]
Writes benchmarks/results/limits_<res>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper, shape_inference

from bodydance_client.contract import FRAME_STAGES, ONNX_STAGES
from bodydance_export.pipeline import export_stage
from bodydance_export.sample_inputs import sample_inputs

RESULTS = Path(__file__).parent / "results"
DEVICES = {"T4": (65e12, 320e9), "H200": (790e12, 4.8e12)}
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Neg", "Abs", "Where", "Greater", "Less", "Equal", "GreaterOrEqual",
               "LessOrEqual", "And", "Or", "Not", "Clip", "Max", "Min", "Floor", "Ceil", "Round", "Relu", "Sigmoid",
               "Mod", "Sign", "ArgMax", "ReduceMax", "Cast"}
TRANSCENDENTAL = {"Sin", "Cos", "Sqrt", "Exp", "Log", "Pow", "Acos", "Atan", "Tanh", "Reciprocal"}
FREE = {"Reshape", "Transpose", "Gather", "GatherElements", "Concat", "Slice", "Expand", "Unsqueeze", "Squeeze",
        "Shape", "Constant", "ConstantOfShape", "Identity", "Flatten", "Split", "Range", "Tile"}


def _shapes(model):
    inferred = shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = (dims, vi.type.tensor_type.elem_type)
    for init in inferred.graph.initializer:
        shapes[init.name] = (list(init.dims), init.data_type)
    return inferred, shapes


def _bytes(entry):
    dims, elem = entry
    return int(np.prod(dims)) * onnx.helper.tensor_dtype_to_np_dtype(elem).itemsize if elem else 0


def count(path: Path) -> dict:
    """FLOPs and bytes of one batch-1 ONNX graph."""
    model = onnx.load(str(path))
    for tensor in list(model.graph.input) + list(model.graph.output):  # batch 1
        tensor.type.tensor_type.shape.dim[0].dim_value = 1
    model, shapes = _shapes(model)
    flops, unfused = 0.0, 0
    by_op = {}
    for node in model.graph.node:
        outs = [shapes.get(o) for o in node.output if o in shapes]
        ins = [shapes.get(i) for i in node.input if i in shapes]
        out_elems = sum(int(np.prod(o[0])) for o in outs)
        op = node.op_type
        if op in FREE:
            f = 0.0
        elif op in TRANSCENDENTAL:
            f = 4.0 * out_elems
        elif op == "GridSample":
            f = 20.0 * out_elems
        elif op in ("MaxPool", "AveragePool"):
            kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [1])
            f = float(np.prod(kernel)) * out_elems
        elif op.startswith("Reduce"):
            f = float(sum(int(np.prod(i[0])) for i in ins[:1]))
        elif op in ("MatMul", "Gemm") and len(ins) >= 2:
            f = 2.0 * out_elems * ins[0][0][-1]  # M*N outputs, K multiply-adds each
        elif op == "Einsum":
            eq = next(a.s.decode() for a in node.attribute if a.name == "equation")
            extents = {}
            for term, entry in zip(eq.split("->")[0].split(","), ins):
                for letter, size in zip(term.strip(), entry[0]):
                    extents[letter] = size
            f = 2.0 * float(np.prod(list(extents.values())))
        else:
            f = float(out_elems)
        flops += f
        by_op[op] = by_op.get(op, 0.0) + f
        unfused += sum(_bytes(e) for e in ins + outs if e)
    ideal = sum(_bytes(shapes[t.name]) for t in list(model.graph.input) + list(model.graph.output))
    ideal += sum(numpy_helper.to_array(i).nbytes for i in model.graph.initializer)
    top = dict(sorted(by_op.items(), key=lambda kv: -kv[1])[:4])
    return {"flops": flops, "bytes_ideal": ideal, "bytes_unfused": unfused, "top_ops": top}


def machine_peaks() -> dict:
    a = np.random.rand(1024, 1024).astype(np.float32)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    big = np.ones(64 * 2**20 // 4, np.float32)
    out = np.empty_like(big)
    copy = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(out, big)
        copy = min(copy, time.perf_counter() - t0)
    return {"flops_per_s": 2 * 1024 ** 3 / best, "bytes_per_s": 2 * big.nbytes / copy}


def measured_ms(path: Path, contract, resolution: int, rounds: int = 10) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = sample_inputs(contract, resolution, batch=1, seed=3)
    feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
    session.run(None, feeds)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=256)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="limits-"))
    peaks = machine_peaks()
    devices = dict(DEVICES, **{"this CPU (measured)": (peaks["flops_per_s"], peaks["bytes_per_s"])})
    rows = {}
    for contract in ONNX_STAGES:
        version = work / contract.name / "1"
        export_stage(contract, args.resolution, version, fp16_check=False)
        row = count(version / "model.onnx")
        row["measured_cpu_ms"] = measured_ms(version / "model.onnx", contract, args.resolution)
        for name, (flops_s, bytes_s) in devices.items():
            row[f"bound_ms {name}"] = 1e3 * max(row["flops"] / flops_s, row["bytes_ideal"] / bytes_s)
        row["unfused_bound_ms this CPU"] = 1e3 * row["bytes_unfused"] / peaks["bytes_per_s"]
        rows[contract.name] = row
    frame = {k: sum(rows[c.name][k] for c in FRAME_STAGES) for k in rows[FRAME_STAGES[0].name] if k != "top_ops"}
    rows["frame path (3 stages)"] = frame
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"limits_{args.resolution}.json").write_text(json.dumps({"machine": peaks, "stages": rows}, indent=2))
    names = list(devices)
    lines = [f"# Work per frame at {args.resolution}px (batch 1) and the bounds it implies", "",
             f"This machine measured: {peaks['flops_per_s'] / 1e9:.0f} GFLOP/s (float32 matmul), "
             f"{peaks['bytes_per_s'] / 1e9:.1f} GB/s (copy).", "",
             "| stage | MFLOP | MB ideal | MB unfused | " + " | ".join(f"bound {n} (ms)" for n in names)
             + " | unfused-bytes bound this CPU (ms) | measured CPU (ms) | measured / CPU bound |",
             "|---|---|---|---|" + "---|" * len(names) + "---|---|---|"]
    for stage, r in rows.items():
        cpu_bound = r["bound_ms this CPU (measured)"]
        lines.append(f"| {stage} | {r['flops'] / 1e6:.1f} | {r['bytes_ideal'] / 1e6:.2f} | {r['bytes_unfused'] / 1e6:.1f} | "
                     + " | ".join(f"{r[f'bound_ms {n}']:.4f}" for n in names)
                     + f" | {r['unfused_bound_ms this CPU']:.1f} | {r['measured_cpu_ms']:.1f} | {r['measured_cpu_ms'] / cpu_bound:.0f}x |")
    lines += ["", "Largest FLOP contributors: " + "; ".join(
        f"{k}: " + ", ".join(f"{op} {v / 1e6:.0f}M" for op, v in r["top_ops"].items())
        for k, r in rows.items() if "top_ops" in r)]
    (RESULTS / f"limits_{args.resolution}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
