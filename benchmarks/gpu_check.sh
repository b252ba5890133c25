#!/usr/bin/env bash
# One prepared run on a lent GPU machine (PyTorch with CUDA, no TensorRT), well inside 8 minutes:
# frame path FP32 vs FP16 parity and per-frame latency at 512x512. Results go to $OUT (or benchmarks/results/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD:$PWD/client:$PWD/export${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia_smi.csv" || true
python3 -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>/dev/null || echo "tensorrt: not installed (timed only where importable)"
timeout 420 python3 benchmarks/gpu_frame_path.py --resolution 512 --batches 1,8 --iters 50 --out "$out" 2>&1 | tee "$out/gpu_frame_path.log"
