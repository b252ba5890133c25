"""``python -m bodydance_export.tensorrt_build``: build the plans of a repository; the exit code says how it went."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from bodydance_export.parity import ParityError
from bodydance_export.tensorrt_build.build import DEFAULT_TIMING_CACHE
from bodydance_export.tensorrt_build.runtime import TensorRTUnavailableError, import_tensorrt

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_NO_TENSORRT = 3
EXIT_PARITY_FAILED = 4

PROG = "bodydance_export.tensorrt_build"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description="Build TensorRT FP16 plans for the ONNX stages on this GPU (never committed: tied to the "
                    "GPU architecture and TensorRT version).")
    parser.add_argument("--cpu-repository", "--onnx-repository", dest="cpu", type=Path,
                        default=Path("model_repository/cpu"), help="where <stage>/1/model.onnx are read")
    parser.add_argument("--gpu-repository", "--plan-repository", dest="gpu", type=Path,
                        default=Path("model_repository/gpu"), help="where <stage>/1/model.plan are written")
    parser.add_argument("--stages", default="", help="comma-separated subset of the ONNX stages (default: all)")
    parser.add_argument("--timing-cache", default=str(DEFAULT_TIMING_CACHE),
                        help="TensorRT timing cache to read and update ('' for none; default %(default)s)")
    parser.add_argument("--parity", choices=("auto", "on", "off"), default="auto",
                        help="compare each plan with ONNX Runtime (auto: where onnxruntime, polygraphy and a GPU "
                             "are present)")
    parser.add_argument("--workspace-gib", type=float, default=4.0)
    parser.add_argument("--report", type=Path, help="also write the build reports here as JSON")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        import_tensorrt()
    except TensorRTUnavailableError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_NO_TENSORRT
    # Past the TensorRT check: the repository step reads the typed model descriptions (tritonclient's protobuf).
    from bodydance_export.tensorrt_build.repository import build_repository

    try:
        reports = build_repository(
            args.cpu, args.gpu, stages=[s for s in args.stages.split(",") if s] or None,
            timing_cache_path=Path(args.timing_cache) if args.timing_cache else None,
            parity=args.parity, workspace_gib=args.workspace_gib)
    except ParityError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_PARITY_FAILED
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(reports, indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
