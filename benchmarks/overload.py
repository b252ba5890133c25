"""Overload: many times the frame capacity from concurrent clients on loopback, then the server must still serve.

Raw tritonclient senders (no retries, so every rejection is counted) each
send frame requests back to back for a fixed time. The frame stages' queue
policy (max 16 waiting, 3 s timeout, reject) should keep admitted latency
bounded and answer the excess with UNAVAILABLE instead of queueing it.

    python benchmarks/overload.py [--clients 32] [--seconds 20]
Writes benchmarks/results/overload.json and .md.
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from bodydance.serving.repository import REPOSITORY_ROOT
from bodydance.serving.server import EmbeddedTritonServer
from bodydance_client import contract as C
from bodydance_client.sdk import BodyDanceClient, frame_request, tensor_input
from bodydance_client.templates import load_bundled
from bodydance_export.freshness import ensure_exported

RESULTS = Path(__file__).parent / "results"
PHOTO = Path(__file__).resolve().parents[1] / "client" / "bodydance_client" / "data" / "astronaut.jpg"


def _run_threads(target, count: int) -> float:
    """Run ``count`` threads of ``target`` to the end; seconds from the first start to the last join."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0


def capacity(url, inputs, outputs, seconds=6.0, window=8) -> float:
    """Frames per second the server sustains with a modest window (the reference for 'N x capacity')."""
    client = grpcclient.InferenceServerClient(url)
    done, lock, stop = [0], threading.Lock(), time.monotonic() + seconds

    def worker():
        while time.monotonic() < stop:
            client.infer(C.FRAME_ENSEMBLE.name, inputs, outputs=outputs)
            with lock:
                done[0] += 1
    return done[0] / _run_threads(worker, window)


def overload(url, inputs, outputs, clients: int, seconds: float):
    latencies, outcomes, lock = [], collections.Counter(), threading.Lock()
    stop = time.monotonic() + seconds

    def sender():
        conn = grpcclient.InferenceServerClient(url)
        while time.monotonic() < stop:
            t0 = time.monotonic()
            try:
                conn.infer(C.FRAME_ENSEMBLE.name, inputs, outputs=outputs, client_timeout=30)
                with lock:
                    latencies.append(time.monotonic() - t0)
                    outcomes["ok"] += 1
            except InferenceServerException as err:
                with lock:
                    outcomes[str(err.status())] += 1
                time.sleep(0.05)  # a rejected client pauses briefly, as the SDK's backoff would
        conn.close()
    return latencies, outcomes, _run_threads(sender, clients)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    ensure_exported(REPOSITORY_ROOT / "cpu")
    dance = load_bundled("disco")
    with EmbeddedTritonServer(REPOSITORY_ROOT / "cpu") as server:
        with BodyDanceClient(server.grpc_url) as sdk:
            subject = sdk.prepare(PHOTO)
        inputs, outputs = frame_request([tensor_input(s, subject.tensors[s.name]) for s in C.FRAME_SUBJECT_TENSORS],
                                        dance.poses[30], dance.translations[30])
        fps = capacity(server.grpc_url, inputs, outputs)
        latencies, outcomes, wall = overload(server.grpc_url, inputs, outputs, args.clients, args.seconds)
        probe = grpcclient.InferenceServerClient(server.grpc_url)
        alive = probe.is_server_ready()
        after = probe.infer(C.FRAME_ENSEMBLE.name, inputs, outputs=outputs).as_numpy("frame").shape
        alive_after = bool(alive and after == (1,) + C.FRAME.concrete_shape(C.DEFAULT_RESOLUTION))
    total = sum(outcomes.values())
    lat = np.asarray(latencies) * 1e3
    result = {
        "capacity_fps": fps, "clients": args.clients, "seconds": wall,
        "offered_requests_per_s": total / wall, "offered_over_capacity": total / wall / fps,
        "admitted_fps": outcomes["ok"] / wall, "outcomes": dict(outcomes),
        "share_rejected": 1.0 - outcomes["ok"] / max(total, 1),
        "admitted_latency_ms": {q: float(np.percentile(lat, p)) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))}
        if len(lat) else {}, "admitted_latency_max_ms": float(lat.max()) if len(lat) else None,
        "server_ready_and_serving_after": alive_after,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overload.json").write_text(json.dumps(result, indent=2))
    lines = ["# Overload on the embedded CPU server", "",
             f"- capacity (8 in flight): {fps:.1f} frames/s",
             f"- load held: {args.clients} clients for {wall:.0f} s, {result['offered_requests_per_s']:.1f} requests/s "
             f"offered = {result['offered_over_capacity']:.1f}x capacity",
             f"- admitted: {result['admitted_fps']:.1f} frames/s, latency p50 {result['admitted_latency_ms'].get('p50', 0):.0f} ms, "
             f"p99 {result['admitted_latency_ms'].get('p99', 0):.0f} ms, max {result['admitted_latency_max_ms'] or 0:.0f} ms",
             f"- rejected: {result['share_rejected']:.1%} ({', '.join(f'{k}: {v}' for k, v in outcomes.items())})",
             f"- server ready and serving afterwards: {alive_after}"]
    (RESULTS / "overload.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
