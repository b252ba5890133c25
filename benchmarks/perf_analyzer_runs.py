"""perf_analyzer against both ensembles on the embedded CPU server (gRPC), results as CSV.

Real inputs: the bundled astronaut photo for ``bodydance_subject``, and the
subject tensors it yields plus a template pose for ``bodydance_frame``,
written as raw binary files (one per input) that perf_analyzer reads.

    python benchmarks/perf_analyzer_runs.py [--url host:port] [--concurrency 1,2,4]

perf_analyzer ships inside the tritonclient==2.50.0 manylinux wheel; it needs
Debian's libb64-0d and libcudart.so.12 (nvidia-cuda-runtime-cu12 wheel) on
LD_LIBRARY_PATH, which ``perf_analyzer_env`` adds.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from bodydance_client import contract as C
from bodydance_client.images import load_photo
from bodydance_client.templates import load_bundled
from perf_analyzer_env import find_perf_analyzer, perf_analyzer_env

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PHOTO = ROOT / "client" / "bodydance_client" / "data" / "astronaut.jpg"


def write_inputs(folder: Path, arrays: Dict[str, np.ndarray]) -> Path:
    """One raw little-endian file per input, without the batch dimension."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        (folder / name).write_bytes(np.ascontiguousarray(array).tobytes())
    return folder


def run_perf_analyzer(model: str, url: str, data: Path, out_csv: Path, concurrency: List[int],
                      shapes: Optional[Dict[str, tuple]] = None, requests_per_window: int = 20,
                      stability_percentage: int = 25) -> List[dict]:
    """One perf_analyzer run per concurrency level; ``stability_percentage`` is how far windows may differ
    (this machine is shared: a smoke test loosens it, benchmarks keep it)."""
    rows = []
    for level in concurrency:
        csv_path = out_csv.with_name(f"{out_csv.stem}_c{level}.csv")
        cmd = [str(find_perf_analyzer()), "-m", model, "-u", url, "-i", "grpc", "-b", "1",
               "--input-data", str(data), "--concurrency-range", f"{level}:{level}",
               "--measurement-mode", "count_windows", "--measurement-request-count", str(requests_per_window),
               "--max-trials", "6", "--stability-percentage", str(stability_percentage), "--percentile", "95", "-f", str(csv_path)]
        for name, shape in (shapes or {}).items():
            cmd += ["--shape", f"{name}:{','.join(map(str, shape))}"]
        run = subprocess.run(cmd, capture_output=True, text=True, env=perf_analyzer_env())
        if run.returncode != 0:
            raise RuntimeError(f"perf_analyzer failed for {model} at concurrency {level}:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
        with open(csv_path) as f:
            for row in csv.DictReader(f):
                row["model"] = model
                rows.append(row)
        csv_path.unlink()
    return rows


@contextlib.contextmanager
def maybe_server(url: Optional[str]):
    if url:
        yield url
        return
    from bodydance.serving.repository import REPOSITORY_ROOT
    from bodydance.serving.server import EmbeddedTritonServer
    from bodydance_export.freshness import ensure_exported

    ensure_exported(REPOSITORY_ROOT / "cpu")
    with EmbeddedTritonServer(REPOSITORY_ROOT / "cpu") as server:
        yield server.grpc_url


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="gRPC host:port of a running server (default: start the embedded one)")
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--out", type=Path, default=RESULTS / "perf_analyzer_ensembles.csv")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    photo = load_photo(PHOTO)
    pose = load_bundled("disco")
    work = Path(tempfile.mkdtemp(prefix="perf-"))
    with maybe_server(args.url) as url:
        from bodydance_client.sdk import BodyDanceClient

        with BodyDanceClient(url) as client:
            subject = client.prepare(photo)
        subject_data = write_inputs(work / "subject", {"photo": photo})
        frame_arrays = {s.name: subject.tensors[s.name][0] for s in C.FRAME_SUBJECT_TENSORS}
        frame_arrays["target_pose"] = pose.poses[45]
        frame_arrays["target_translation"] = pose.translations[45]
        frame_data = write_inputs(work / "frame", frame_arrays)
        rows = run_perf_analyzer(C.SUBJECT_ENSEMBLE.name, url, subject_data, args.out, [1],
                                 shapes={"photo": photo.shape})
        rows += run_perf_analyzer(C.FRAME_ENSEMBLE.name, url, frame_data, args.out, levels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    keys = ["model"] + [k for k in rows[0] if k != "model"]
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(f"{row['model']:18s} concurrency {row['Concurrency']:>2s}  {float(row['Inferences/Second']):7.2f} infer/s  "
              f"p50 {int(row['p50 latency']) / 1e3:7.1f} ms  p95 {int(row['p95 latency']) / 1e3:7.1f} ms  "
              f"p99 {int(row['p99 latency']) / 1e3:7.1f} ms")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
