"""perf_analyzer against the two ensembles of a running server, over gRPC; CSV results and a summary.

    python benchmarks/perf_ensembles.py [--url 127.0.0.1:8001] [--resolution 256] [--concurrency 1,2,4]

``bodydance_subject`` is measured at concurrency 1 (one photo per video) and
``bodydance_frame`` at each ``--concurrency`` level. Requests carry synthetic
but plausible tensors generated from the wire contract
(:mod:`bodydance_client.contract`): a smooth photo, a person-shaped mask and
parsing, standing poses, a framing camera, region style codes whose first
three values are mean colours. They go to perf_analyzer as ``--input-data``
JSON. The server must serve the same resolution (checked first).

Windows are short (time windows of 2 s, at most 5 per level) so a whole run
stays well under three minutes; raise them for publishable figures. Where the
windows never settle (a shared machine), the level is measured again over
three windows without the stability check and its row says ``Stable = no``
(``--strict`` fails instead). Results:
``benchmarks/results/perf_ensembles_r<resolution>.csv`` (one row per model and
concurrency, perf_analyzer's own columns).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # perf_analyzer_env beside this file

from bodydance_client import contract as C  # noqa: E402
from perf_analyzer_env import PerfAnalyzerUnavailable, perf_analyzer_command  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_URL = "127.0.0.1:8001"
DEFAULT_PHOTO_SHAPE = (480, 640, 3)

# --- plausible request tensors from the contract ---------------------------------------------------------


def _smooth_rgb(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """[3, H, W] float32 in [0, 1]: a few low-frequency waves per channel, like a photo at pixel scale."""
    y, x = np.meshgrid(np.linspace(0, 1, height, dtype=np.float32), np.linspace(0, 1, width, dtype=np.float32),
                       indexing="ij")
    image = np.empty((3, height, width), np.float32)
    for c in range(3):
        fx, fy = rng.uniform(1, 6, 2)
        phase = rng.uniform(0, 2 * np.pi)
        image[c] = rng.uniform(0.3, 0.7) + 0.25 * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
    return np.clip(image, 0, 1)


def _person_mask(rng: np.random.Generator, n: int) -> np.ndarray:
    """[1, N, N] float32 in [0, 1]: a soft upright ellipse covering about a fifth of the square."""
    y, x = np.meshgrid((np.arange(n) + 0.5) / n * 2 - 1, (np.arange(n) + 0.5) / n * 2 - 1, indexing="ij")
    cx, cy = rng.normal(0, 0.05, 2)
    r = np.sqrt(((x - cx) / 0.3) ** 2 + ((y - cy) / 0.85) ** 2)
    return (1 / (1 + np.exp((r - 1) * 12)))[None].astype(np.float32)


def _parsing(mask: np.ndarray) -> np.ndarray:
    """[1, N, N] int32 part labels: background outside the mask, head / torso / thigh / shin_foot bands inside,
    arms at the torso's sides."""
    n = mask.shape[-1]
    rows = (np.arange(n) + 0.5) / n
    band = np.select([rows < 0.2, rows < 0.55, rows < 0.75], [C.PART_NAMES.index("head"), C.PART_NAMES.index("torso"),
                     C.PART_NAMES.index("thigh")], C.PART_NAMES.index("shin_foot"))
    labels = np.broadcast_to(band[:, None], (n, n)).copy()
    cols = (np.arange(n) + 0.5) / n
    arms = (np.abs(cols - 0.5) > 0.2)[None, :] & ((rows > 0.2) & (rows < 0.55))[:, None]
    labels[arms] = C.PART_NAMES.index("upper_arm")
    labels[mask[0] < 0.5] = C.PART_NAMES.index("background")
    return labels[None].astype(np.int32)


def _pose(rng: np.random.Generator) -> np.ndarray:
    """[24, 3] axis-angle radians: a standing body, arms lowered from the T-pose, small random bends."""
    pose = rng.normal(0, 0.12, (C.NUM_JOINTS, 3)).astype(np.float32)
    pose[0] = [0, 0, 0]  # upright, facing the camera
    pose[C.JOINT_NAMES.index("left_shoulder"), 2] -= 1.1
    pose[C.JOINT_NAMES.index("right_shoulder"), 2] += 1.1
    return pose


def _region_style(rng: np.random.Generator) -> np.ndarray:
    """[parts, STYLE_DIM]: codes ~ N(0, 1) with the mean RGB in [0, 1] in front."""
    style = rng.normal(0, 1, (C.NUM_PARTS, C.STYLE_DIM)).astype(np.float32)
    style[:, :3] = rng.uniform(0.1, 0.9, (C.NUM_PARTS, 3))
    return style


def make_request(contract: C.StageContract, resolution: int, rng: np.random.Generator,
                 variable_shapes: Optional[Mapping[str, Sequence[int]]] = None) -> Dict[str, np.ndarray]:
    """One request's inputs for ``contract`` (no batch dimension), keyed by tensor name, in contract dtypes.

    ``variable_shapes`` gives the concrete shape of inputs with free (-1)
    dimensions; the photo defaults to 480x640x3.
    """
    shapes = {C.PHOTO.name: DEFAULT_PHOTO_SHAPE, **dict(variable_shapes or {})}
    n = resolution
    mask = _person_mask(rng, n)
    made = {
        C.SOURCE_IMAGE.name: lambda: _smooth_rgb(rng, n, n),
        C.BACKGROUND.name: lambda: _smooth_rgb(rng, n, n),
        C.PERSON_MASK.name: lambda: mask,
        C.SOURCE_PARSING.name: lambda: _parsing(mask),
        C.BETAS.name: lambda: rng.normal(0, 0.5, C.NUM_BETAS),
        C.SOURCE_POSE.name: lambda: _pose(rng),
        C.TARGET_POSE.name: lambda: _pose(rng),
        C.CAMERA.name: lambda: np.array([0.9 * (1 + rng.normal(0, 0.05)), rng.normal(0, 0.05),
                                         0.05 + rng.normal(0, 0.02)]),
        C.REGION_STYLE.name: lambda: _region_style(rng),
        C.TARGET_TRANSLATION.name: lambda: rng.normal(0, 0.05, 3),
    }
    request = {}
    for spec in contract.inputs:
        shape = spec.concrete_shape(resolution)
        if -1 in shape:
            if spec.name not in shapes:
                raise ValueError(f"{spec.name} has free dimensions {spec.shape}; give its shape")
            shape = tuple(int(d) for d in shapes[spec.name])
            if len(shape) != len(spec.shape) or any(f != -1 and f != d for f, d in zip(spec.shape, shape)):
                raise ValueError(f"{spec.name}: shape {shape} does not fit the contract's {spec.shape}")
        if spec.name == C.PHOTO.name:
            value = (_smooth_rgb(rng, shape[0], shape[1]).transpose(1, 2, 0) * 255).round()
        elif spec.name in made:
            value = made[spec.name]()
        elif spec.dtype == C.I32:
            value = rng.integers(0, C.NUM_PARTS, shape)
        else:
            value = rng.uniform(0, 1, shape)
        value = np.asarray(value).astype(spec.dtype)
        if value.shape != tuple(shape):
            raise AssertionError(f"{spec.name}: generated {value.shape}, contract says {shape}")
        request[spec.name] = value
    return request


def input_data_json(contract: C.StageContract, resolution: int, *, samples: int = 1, seed: int = 0,
                    variable_shapes: Optional[Mapping[str, Sequence[int]]] = None, decimals: int = 5) -> dict:
    """perf_analyzer's ``--input-data`` document: ``{"data": [{name: {"content": [...], "shape": [...]}}, ...]}``.

    One entry per sample (perf_analyzer cycles through them); contents are
    flattened row-major without the batch dimension, floats rounded to
    ``decimals`` places to keep the file small.
    """
    if samples < 1:
        raise ValueError("need at least one sample")
    rng = np.random.default_rng(seed)
    data = []
    for _ in range(samples):
        entry = {}
        for name, value in make_request(contract, resolution, rng, variable_shapes).items():
            # via float64, so JSON gets the short decimal ("0.12346"), not float32's widened repr
            flat = np.round(value.astype(np.float64), decimals) if np.issubdtype(value.dtype, np.floating) else value
            entry[name] = {"content": flat.ravel().tolist(), "shape": list(value.shape)}
        data.append(entry)
    return {"data": data}


def write_input_data(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(document, f, separators=(",", ":"))
    return path


# --- running perf_analyzer -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Measurement:
    """How perf_analyzer decides a level is measured; defaults keep a whole run under ~3 minutes."""

    mode: str = "time_windows"  # or "count_windows"
    interval_ms: int = 2000  # time_windows: window length
    request_count: int = 20  # count_windows: requests per window
    max_trials: int = 5
    stability_percentage: int = 25
    percentile: int = 95
    # A shared or noisy machine may never give stable windows: then the level is measured once more, over
    # three windows whatever their spread, and its row says so (Stable = no). False: fail instead.
    # (Not --request-count: perf_analyzer 2.50 then reports throughput as requests per one second.)
    relaxed_fallback: bool = True

    def args(self) -> List[str]:
        if self.mode not in ("time_windows", "count_windows"):
            raise ValueError(f"unknown measurement mode {self.mode!r}")
        window = (["--measurement-interval", str(self.interval_ms)] if self.mode == "time_windows"
                  else ["--measurement-request-count", str(self.request_count)])
        return ["--measurement-mode", self.mode, *window, "--max-trials", str(self.max_trials),
                "--stability-percentage", str(self.stability_percentage), "--percentile", str(self.percentile)]


def perf_analyzer_args(model: str, url: str, input_data: Path, csv_path: Path, concurrency: int,
                       measurement: Measurement = Measurement(),
                       shapes: Optional[Mapping[str, Sequence[int]]] = None) -> List[str]:
    """perf_analyzer's arguments (without the binary) for one model at one concurrency level."""
    args = ["-m", model, "-u", url, "-i", "grpc", "-b", "1", "--input-data", str(input_data),
            "--concurrency-range", f"{concurrency}:{concurrency}", *measurement.args(), "-f", str(csv_path)]
    for name, shape in (shapes or {}).items():
        args += ["--shape", f"{name}:{','.join(str(int(d)) for d in shape)}"]
    return args


UNSTABLE = "Failed to obtain stable measurement"


RELAXED = ["--stability-percentage", "1000", "--max-trials", "3"]  # later flags win in perf_analyzer


def run_level(binary: Path, env: Dict[str, str], args: List[str], timeout_s: float = 150,
              relaxed_fallback: bool = False) -> List[dict]:
    """Run perf_analyzer once (``args`` from :func:`perf_analyzer_args`) and return its CSV rows.

    Each row gets ``Stable``: "yes", or "no" where the windows never settled
    and the level was re-measured over three windows without a stability check.
    """
    csv_path = Path(args[args.index("-f") + 1])
    attempts = [(args, "yes")]
    if relaxed_fallback:
        attempts.append((args + RELAXED, "no"))
    for attempt, stable in attempts:
        csv_path.unlink(missing_ok=True)
        try:
            run = subprocess.run([str(binary), *attempt], capture_output=True, text=True, env=env, timeout=timeout_s)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"perf_analyzer ran past {timeout_s:.0f} s: {' '.join(attempt)}") from err
        output = (run.stdout + run.stderr).strip()
        if run.returncode == 0 and csv_path.is_file():
            with open(csv_path, newline="") as f:
                return [{**row, "Stable": stable} for row in csv.DictReader(f)]
        if UNSTABLE not in output:
            break
    raise RuntimeError(f"perf_analyzer failed (exit {run.returncode}) for {' '.join(args[:2])}:\n{output[-1500:]}")


def check_server(url: str, resolution: int, contracts: Sequence[C.StageContract]) -> None:
    """Fail early, with a clear message, if the server is not up or serves another resolution."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    try:
        client = grpcclient.InferenceServerClient(url)
        if not client.is_server_live():
            raise RuntimeError(f"the server at {url} is not live")
        for contract in contracts:
            if not client.is_model_ready(contract.name):
                raise RuntimeError(f"{contract.name} is not ready on {url}")
            served = {i.name: [int(d) for d in i.shape[1:]] for i in client.get_model_metadata(contract.name).inputs}
            for spec in contract.inputs:
                want = list(spec.concrete_shape(resolution))
                got = served.get(spec.name)
                if got is None or any(w != -1 and g != -1 and w != g for w, g in zip(want, got)) or len(got) != len(want):
                    raise RuntimeError(f"{contract.name} on {url} takes {spec.name} as {got}, not {want}: "
                                       "pass the server's --resolution")
    except InferenceServerException as err:
        raise RuntimeError(f"cannot reach Triton at {url} over gRPC: {err}") from err


def _ms(row: Mapping[str, str], key: str) -> float:
    return float(row.get(key) or 0) / 1e3  # perf_analyzer reports microseconds


def summarize(rows: Sequence[Mapping[str, str]]) -> str:
    lines = [f"{'model':18s} {'conc':>4s} {'infer/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} "
             f"{'queue ms':>8s} {'compute ms':>10s}  stable"]
    for r in rows:
        def us(key, r=r):
            return _ms(r, key)

        compute = us("Server Compute Input") + us("Server Compute Infer") + us("Server Compute Output")
        lines.append(f"{r['Model']:18s} {int(r['Concurrency']):4d} {float(r['Inferences/Second']):8.2f} "
                     f"{us('p50 latency'):8.1f} {us('p95 latency'):8.1f} {us('p99 latency'):8.1f} "
                     f"{us('Server Queue'):8.1f} {compute:10.1f}  {r.get('Stable', '?')}")
    return "\n".join(lines)


def run(url: str = DEFAULT_URL, resolution: int = C.DEFAULT_RESOLUTION, concurrency: Sequence[int] = (1, 2, 4),
        photo_shape: Tuple[int, int, int] = DEFAULT_PHOTO_SHAPE, out_dir: Path = RESULTS,
        measurement: Measurement = Measurement(), samples: int = 1, seed: int = 0,
        check: bool = True) -> Tuple[Path, List[dict]]:
    """Measure both ensembles; returns the merged CSV's path and its rows."""
    binary, env = perf_analyzer_command()
    if check:
        check_server(url, resolution, C.ENSEMBLES)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_csv = out_dir / f"perf_ensembles_r{resolution}.csv"
    plan = [(C.SUBJECT_ENSEMBLE, [1], {C.PHOTO.name: photo_shape}),
            (C.FRAME_ENSEMBLE, list(concurrency), {})]
    rows: List[dict] = []
    with tempfile.TemporaryDirectory(prefix="perf-ensembles-") as work:
        for contract, levels, shapes in plan:
            data = write_input_data(Path(work) / f"{contract.name}.json", input_data_json(
                contract, resolution, samples=samples, seed=seed, variable_shapes=shapes))
            for level in levels:
                csv_path = out_dir / f".{out_csv.stem}.{contract.name}.c{level}.csv"  # perf_analyzer's -f
                try:
                    args = perf_analyzer_args(contract.name, url, data, csv_path, level, measurement, shapes)
                    for row in run_level(binary, env, args, relaxed_fallback=measurement.relaxed_fallback):
                        rows.append({"Model": contract.name, "Resolution": resolution, **row})
                finally:
                    csv_path.unlink(missing_ok=True)
    if rows:
        with open(out_csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return out_csv, rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="gRPC host:port of a running Triton (default %(default)s)")
    parser.add_argument("--resolution", type=int, default=C.DEFAULT_RESOLUTION,
                        help="working resolution the server was exported at (default %(default)s)")
    parser.add_argument("--concurrency", default="1,2,4", help="bodydance_frame concurrency levels")
    parser.add_argument("--photo-shape", default="480,640,3", help="H,W,3 of the photo sent to bodydance_subject")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--measurement-mode", choices=("time_windows", "count_windows"), default="time_windows")
    parser.add_argument("--measurement-interval", type=int, default=2000, help="ms per time window")
    parser.add_argument("--measurement-request-count", type=int, default=20, help="requests per count window")
    parser.add_argument("--max-trials", type=int, default=5)
    parser.add_argument("--stability-percentage", type=int, default=25)
    parser.add_argument("--strict", action="store_true",
                        help="fail where windows never settle, instead of re-measuring without the stability check")
    parser.add_argument("--samples", type=int, default=1, help="distinct requests perf_analyzer cycles through")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-check", action="store_true", help="skip the server readiness/resolution check")
    args = parser.parse_args(argv)

    measurement = Measurement(args.measurement_mode, args.measurement_interval, args.measurement_request_count,
                              args.max_trials, args.stability_percentage, relaxed_fallback=not args.strict)
    try:
        out_csv, rows = run(args.url, args.resolution, [int(c) for c in args.concurrency.split(",") if c],
                            tuple(int(d) for d in args.photo_shape.split(",")), args.out_dir, measurement,
                            args.samples, args.seed, check=not args.no_check)
    except (PerfAnalyzerUnavailable, RuntimeError, ValueError) as err:
        print(f"perf_ensembles: {err}", file=sys.stderr)
        return 1
    print(summarize(rows))
    print(f"wrote {out_csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
