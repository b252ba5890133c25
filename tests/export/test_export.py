"""Export steps: each produces a checkable output, and the checks fail when they should."""

import json

import numpy as np
import onnx
import pytest
import torch

from bodydance.stages.registry import STAGE_MODULES
from bodydance_client.contract import PARSING_PRIOR, STYLE_ENCODER, STYLE_GENERATOR
from bodydance_export.pipeline import export_stage
from bodydance_export.sample_inputs import sample_inputs
from bodydance_export.steps import ONNX_OPSET, ExportCheckError, check_fp16, check_parity

RES = 64


def test_export_stage_writes_a_checked_model_and_report(tmp_path):
    report = export_stage(STYLE_GENERATOR, RES, tmp_path / "1")
    model = onnx.load(str(tmp_path / "1" / "model.onnx"))
    assert model.opset_import[0].version == ONNX_OPSET
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # batch is dynamic
    assert "GridSample" in {n.op_type for n in model.graph.node}
    saved = json.loads((tmp_path / "1" / "export_report.json").read_text())
    assert saved["onnx_parity"] == report["onnx_parity"]
    assert all(a["fraction"] >= 0.999 for a in report["onnx_parity"])


def test_parity_check_catches_a_model_that_differs(tmp_path):
    export_stage(PARSING_PRIOR, RES, tmp_path / "1", fp16_check=False)

    class Shifted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = STAGE_MODULES["parsing_prior"](RES)

        def forward(self, *args):
            return torch.roll(self.inner(*args), shifts=3, dims=-1)

    inputs = sample_inputs(PARSING_PRIOR, RES, batch=2, seed=4)
    with pytest.raises(ExportCheckError, match="target_parsing"):
        check_parity(Shifted(), PARSING_PRIOR, tmp_path / "1" / "model.onnx", inputs)


def test_fp16_check_catches_overflow():
    class SumsPixels(torch.nn.Module):  # the style encoder's first version: a raw sum over 65536 pixels
        def forward(self, source_image, person_mask, source_parsing, plate_fill):
            total = source_image.to(person_mask.dtype).sum(dim=(1, 2, 3))[:, None, None]  # uint8 on the wire
            return total.expand(-1, 8, 16).contiguous(), plate_fill
    inputs = sample_inputs(STYLE_ENCODER, 256, batch=1)
    inputs["source_image"] = np.ones_like(inputs["source_image"])
    with pytest.raises(ExportCheckError, match="FP16"):
        check_fp16(SumsPixels(), STYLE_ENCODER, inputs)


def test_an_export_made_from_other_sources_is_stale(tmp_path):
    """A `git pull` that changes the geometry must not leave the old ONNX files serving."""
    from bodydance.serving.model_configs import onnx_stage_names
    from bodydance_export.fingerprint import source_fingerprint
    from bodydance_export.freshness import stale_onnx

    current = source_fingerprint()
    for name in onnx_stage_names():
        version = tmp_path / name / "1"
        version.mkdir(parents=True)
        (version / "model.onnx").write_bytes(b"stand-in")
        (version / "export_report.json").write_text(json.dumps({"source_fingerprint": current}))
    assert stale_onnx(tmp_path) == []
    first = onnx_stage_names()[0]
    (tmp_path / first / "1" / "export_report.json").write_text(json.dumps({"source_fingerprint": "older"}))
    (tmp_path / onnx_stage_names()[1] / "1" / "model.onnx").unlink()
    assert stale_onnx(tmp_path) == [first, onnx_stage_names()[1]]


def test_ensure_exported_exports_only_what_is_stale(tmp_path, monkeypatch):
    from bodydance.serving.model_configs import RESOLUTION, onnx_stage_names
    from bodydance_export import freshness, pipeline
    from bodydance_export.fingerprint import source_fingerprint

    exported, logged = [], []
    monkeypatch.setattr(pipeline, "export_all", lambda repository, resolution: exported.append((repository, resolution)))
    freshness.ensure_exported(tmp_path, log=logged.append)  # nothing exported yet: everything is stale
    assert exported == [(tmp_path, RESOLUTION["cpu"])] and ", ".join(onnx_stage_names()) in logged[0]
    for name in onnx_stage_names():
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "1" / "model.onnx").write_bytes(b"stand-in")
        (tmp_path / name / "1" / "export_report.json").write_text(json.dumps({"source_fingerprint": source_fingerprint()}))
    freshness.ensure_exported(tmp_path, log=logged.append)
    assert len(exported) == 1 and len(logged) == 1


def test_serving_never_imports_the_export_package():
    """The export reads the serving package's model descriptions; the other way round would be a cycle."""
    from pathlib import Path

    import bodydance.serving

    importers = [path.name for path in Path(bodydance.serving.__file__).parent.rglob("*.py")
                 if any(line.lstrip().startswith(("import bodydance_export", "from bodydance_export"))
                        for line in path.read_text().splitlines())]
    assert importers == []


def test_the_export_checks_and_the_tensorrt_check_compare_alike():
    from bodydance_export import parity, steps
    from bodydance_export.tensorrt_build import run

    assert steps.ExportCheckError is parity.ParityError
    assert type(steps.ONNX_TOLERANCE) is type(run.FP16_PARITY) is parity.Tolerance
    reference = {"y": np.zeros(100, np.float32)}
    candidate = {"y": np.r_[np.zeros(98), np.ones(2)].astype(np.float32)}
    with pytest.raises(ExportCheckError, match=r"y: 98\.0000% within tolerance"):
        parity.check_outputs("candidate", "reference", reference, candidate, steps.ONNX_TOLERANCE)
    (agreement,) = parity.check_outputs("candidate", "reference", reference, candidate, run.FP16_PARITY, strict=False)
    assert agreement.fraction == pytest.approx(0.98) and agreement.max_abs_error == 1.0
