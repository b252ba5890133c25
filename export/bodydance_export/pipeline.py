"""Run the export steps for every ONNX stage into a model repository's version folders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console

from bodydance.stages.registry import STAGE_MODULES
from bodydance_client.contract import DEFAULT_RESOLUTION, ONNX_STAGES, StageContract
from bodydance_export.fingerprint import source_fingerprint
from bodydance_export.precision import FP32_STAGES
from bodydance_export.sample_inputs import sample_inputs
from bodydance_export.steps import check_fp16, check_parity, cleanup_graph, export_onnx

console = Console(stderr=True)


def export_stage(contract: StageContract, resolution: int, version_dir: Path, fp16_check: bool = True) -> dict:
    module = STAGE_MODULES[contract.name](resolution).eval()
    example = sample_inputs(contract, resolution, batch=2, seed=1)
    path = version_dir / "model.onnx"
    precision = "fp32" if contract.name in FP32_STAGES else "fp16"
    learned = getattr(module, "refiner", None) is not None  # the style generator with its trained refiner
    report = {"stage": contract.name, "resolution": resolution, "baseline": not learned, "precision": precision,
              "source_fingerprint": source_fingerprint()}
    t0 = time.perf_counter()
    export_onnx(module, contract, example, path)
    report["cleanup"] = cleanup_graph(path)
    report["onnx_parity"] = check_parity(module, contract, path, sample_inputs(contract, resolution, batch=3, seed=2))
    if fp16_check:
        report["fp16_parity"] = check_fp16(module, contract, example, strict=precision == "fp16")
    report["seconds"] = round(time.perf_counter() - t0, 2)
    (version_dir / "export_report.json").write_text(json.dumps(report, indent=2))
    return report


def export_all(repository: Path, resolution: int = DEFAULT_RESOLUTION, fp16_check: bool = True) -> list:
    reports = []
    for contract in ONNX_STAGES:
        console.print(f"[bold]export[/] {contract.name} at {resolution}px")
        reports.append(export_stage(contract, resolution, repository / contract.name / "1", fp16_check))
    return reports


def main(
    repository: Path = typer.Option(Path("model_repository/cpu"), help="model repository to write model.onnx into"),
    resolution: int = typer.Option(DEFAULT_RESOLUTION, help="square working resolution (px)"),
    fp16_check: bool = typer.Option(True, help="also compare the model in half precision"),
):
    """PyTorch -> ONNX -> cleanup -> parity (ORT) -> FP16 check, for every ONNX stage."""
    for report in export_all(repository, resolution, fp16_check):
        worst = min(a["fraction"] for a in report["onnx_parity"])
        console.print(f"  {report['stage']}: {report['cleanup']['nodes_after']} nodes, "
                      f"ORT parity {worst:.4%}, {report['seconds']} s")


if __name__ == "__main__":
    typer.run(main)
