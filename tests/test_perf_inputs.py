"""perf_analyzer tooling: request data generated from the contract, the command line, the environment
that lets the wheel's perf_analyzer start, and (marked ``server``) a short run against toy models that
take the ensembles' names and tensors."""

from __future__ import annotations

import json
import stat
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bodydance_client import contract as C

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import perf_analyzer_env as pae  # noqa: E402
import perf_ensembles as pe  # noqa: E402

RES = 32


def _decode(entry, spec, resolution=RES):
    """One input of an --input-data entry back into an array of the contract's dtype."""
    item = entry[spec.name]
    return np.asarray(item["content"], dtype=spec.dtype).reshape(item["shape"])


# --- request data ------------------------------------------------------------------------------------------

def test_frame_request_has_every_frame_input_with_contract_shapes_and_dtypes():
    doc = json.loads(json.dumps(pe.input_data_json(C.FRAME_ENSEMBLE, RES, samples=2, seed=3)))
    assert len(doc["data"]) == 2
    for entry in doc["data"]:
        assert set(entry) == {s.name for s in C.FRAME_ENSEMBLE.inputs}
        for spec in C.FRAME_ENSEMBLE.inputs:
            shape = spec.concrete_shape(RES)
            assert entry[spec.name]["shape"] == list(shape)
            assert len(entry[spec.name]["content"]) == int(np.prod(shape))
            if spec.dtype == C.I32:  # labels travel as JSON integers, not floats
                assert all(isinstance(v, int) for v in entry[spec.name]["content"][:50])


def test_frame_request_values_are_plausible():
    entry = pe.input_data_json(C.FRAME_ENSEMBLE, RES, seed=1)["data"][0]
    image = _decode(entry, C.SOURCE_IMAGE)
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.02  # not flat, not out of range
    parsing = _decode(entry, C.SOURCE_PARSING)
    labels = set(np.unique(parsing))
    assert labels <= set(range(C.NUM_PARTS)) and 0 in labels and len(labels) >= 4
    assert parsing[0, 0, 0] == 0 and parsing[0, RES // 2, RES // 2] != 0  # person in the middle
    style = _decode(entry, C.REGION_STYLE)
    assert style.shape == (C.NUM_PARTS, C.STYLE_DIM) and 0 <= style[:, :3].min() and style[:, :3].max() <= 1
    pose = _decode(entry, C.TARGET_POSE)
    assert np.abs(pose).max() < 2 * np.pi
    assert pose[C.JOINT_NAMES.index("left_shoulder"), 2] < -0.6  # arms lowered from the T-pose
    camera = _decode(entry, C.CAMERA)
    assert 0.6 < camera[0] < 1.2 and abs(camera[1]) < 0.3
    assert np.abs(_decode(entry, C.TARGET_TRANSLATION)).max() < 0.5


def test_subject_request_carries_a_uint8_photo_of_the_given_shape():
    entry = pe.input_data_json(C.SUBJECT_ENSEMBLE, RES, variable_shapes={"photo": (48, 64, 3)})["data"][0]
    assert set(entry) == {"photo"}
    assert entry["photo"]["shape"] == [48, 64, 3]
    photo = _decode(entry, C.PHOTO)
    assert photo.dtype == np.uint8 and photo.max() > 100 and photo.std() > 5
    assert all(isinstance(v, int) and 0 <= v <= 255 for v in entry["photo"]["content"][:100])
    default = pe.make_request(C.SUBJECT_ENSEMBLE, RES, np.random.default_rng(0))
    assert default["photo"].shape == pe.DEFAULT_PHOTO_SHAPE == (480, 640, 3)


@pytest.mark.parametrize("shape", [(48, 64), (48, 64, 4)])
def test_photo_shapes_outside_the_contract_are_refused(shape):
    with pytest.raises(ValueError, match="does not fit"):
        pe.make_request(C.SUBJECT_ENSEMBLE, RES, np.random.default_rng(0), {"photo": shape})


@pytest.mark.parametrize("contract", C.SUBJECT_STAGES + C.FRAME_STAGES + C.ENSEMBLES, ids=lambda c: c.name)
def test_every_contract_gets_inputs_of_its_declared_dtypes(contract):
    request = pe.make_request(contract, RES, np.random.default_rng(0))
    assert list(request) == [s.name for s in contract.inputs]
    for spec in contract.inputs:
        assert request[spec.name].dtype == spec.dtype
        if -1 not in spec.shape:
            assert request[spec.name].shape == spec.concrete_shape(RES)


def test_seeds_repeat_and_differ():
    a = pe.input_data_json(C.FRAME_ENSEMBLE, RES, seed=5)
    assert a == pe.input_data_json(C.FRAME_ENSEMBLE, RES, seed=5)
    b = pe.input_data_json(C.FRAME_ENSEMBLE, RES, seed=6)
    assert a["data"][0]["betas"]["content"] != b["data"][0]["betas"]["content"]
    with pytest.raises(ValueError):
        pe.input_data_json(C.FRAME_ENSEMBLE, RES, samples=0)


def test_written_json_is_compact_and_reads_back(tmp_path):
    doc = pe.input_data_json(C.FRAME_ENSEMBLE, RES)
    path = pe.write_input_data(tmp_path / "in" / "frame.json", doc)
    text = path.read_text()
    assert json.loads(text) == doc and ", " not in text[:1000]
    # floats are rounded to 5 decimals to keep 512 px files manageable
    assert max(len(repr(v)) for v in doc["data"][0]["source_image"]["content"][:200]) <= 8


# --- the perf_analyzer command --------------------------------------------------------------------------------

def test_perf_analyzer_args_for_the_subject_ensemble():
    args = pe.perf_analyzer_args("bodydance_subject", "127.0.0.1:8001", Path("in.json"), Path("out.csv"), 1,
                                 shapes={"photo": (480, 640, 3)})
    line = " ".join(args)
    assert "-m bodydance_subject -u 127.0.0.1:8001 -i grpc -b 1" in line
    assert "--input-data in.json" in line and "-f out.csv" in line
    assert "--concurrency-range 1:1" in line and "--shape photo:480,640,3" in line
    assert "--measurement-mode time_windows --measurement-interval 2000" in line


def test_count_windows_and_bad_modes():
    m = pe.Measurement(mode="count_windows", request_count=7, max_trials=4)
    args = pe.perf_analyzer_args("bodydance_frame", "h:1", Path("i"), Path("o"), 4, m)
    assert args[args.index("--measurement-request-count") + 1] == "7"
    assert args[args.index("--max-trials") + 1] == "4" and "--measurement-interval" not in args
    with pytest.raises(ValueError, match="measurement mode"):
        pe.Measurement(mode="forever").args()


def _fake_perf_analyzer(tmp_path, behaviour):
    """An executable standing in for perf_analyzer: writes a CSV to -f unless told to fail."""
    script = tmp_path / "perf_analyzer"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys
        args = sys.argv[1:]
        behaviour = {behaviour!r}
        relaxed = "1000" in args
        with open({str(tmp_path / "calls")!r}, "a") as log:
            log.write(" ".join(args) + "\\n")
        if behaviour == "unstable" and not relaxed:
            print("Failed to obtain stable measurement within 5 measurement windows for concurrency 1.")
            sys.exit(2)
        if behaviour == "refused":
            print("error: failed to get model metadata: connection refused")
            sys.exit(99)
        with open(args[args.index("-f") + 1], "w") as f:
            f.write("Concurrency,Inferences/Second,p50 latency,p95 latency,p99 latency\\n1,12.5,80000,90000,95000\\n")
        """))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_run_level_reads_the_csv_and_marks_stable_rows(tmp_path):
    binary = _fake_perf_analyzer(tmp_path, "ok")
    args = pe.perf_analyzer_args("bodydance_frame", "h:1", Path("i"), tmp_path / "o.csv", 1)
    rows = pe.run_level(binary, {}, args, relaxed_fallback=True)
    assert rows == [{"Concurrency": "1", "Inferences/Second": "12.5", "p50 latency": "80000",
                     "p95 latency": "90000", "p99 latency": "95000", "Stable": "yes"}]
    assert len((tmp_path / "calls").read_text().splitlines()) == 1


def test_unsettled_windows_are_remeasured_without_the_stability_check(tmp_path):
    binary = _fake_perf_analyzer(tmp_path, "unstable")
    args = pe.perf_analyzer_args("bodydance_frame", "h:1", Path("i"), tmp_path / "o.csv", 1)
    rows = pe.run_level(binary, {}, args, relaxed_fallback=True)
    assert [r["Stable"] for r in rows] == ["no"]
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 2 and calls[1].endswith("--stability-percentage 1000 --max-trials 3")
    with pytest.raises(RuntimeError, match="stable measurement"):
        pe.run_level(binary, {}, args, relaxed_fallback=False)


def test_other_failures_are_not_retried(tmp_path):
    binary = _fake_perf_analyzer(tmp_path, "refused")
    args = pe.perf_analyzer_args("bodydance_frame", "h:1", Path("i"), tmp_path / "o.csv", 1)
    with pytest.raises(RuntimeError, match=r"(?s)exit 99.*connection refused"):
        pe.run_level(binary, {}, args, relaxed_fallback=True)
    assert len((tmp_path / "calls").read_text().splitlines()) == 1


def test_summary_converts_microseconds_to_milliseconds():
    row = {"Model": "bodydance_frame", "Concurrency": "2", "Inferences/Second": "13.3", "p50 latency": "147090",
           "p95 latency": "168271", "p99 latency": "176362", "Server Queue": "2000", "Server Compute Input": "348",
           "Server Compute Infer": "99136", "Server Compute Output": "2091", "Stable": "yes"}
    line = pe.summarize([row]).splitlines()[1].split()
    assert line[:6] == ["bodydance_frame", "2", "13.30", "147.1", "168.3", "176.4"]
    assert line[6:] == ["2.0", "101.6", "yes"]


# --- perf_analyzer's environment --------------------------------------------------------------------------------

def test_the_wheels_perf_analyzer_is_found_and_starts():
    try:
        binary = pae.find_perf_analyzer()
    except pae.PerfAnalyzerUnavailable:
        pytest.skip("tritonclient's wheel without perf_analyzer here")
    lib_dir = pae.cuda_runtime_lib_dir()
    assert (lib_dir / "libcudart.so.12").is_file()
    env = pae.perf_analyzer_env({"LD_LIBRARY_PATH": "/opt/x"})
    assert env["LD_LIBRARY_PATH"].split(":") == [str(lib_dir), "/opt/x"]
    found, env = pae.perf_analyzer_command()  # runs `perf_analyzer --version` with that environment
    assert found == binary and str(lib_dir) in env["LD_LIBRARY_PATH"]


def test_an_explicit_binary_wins(tmp_path, monkeypatch):
    fake = tmp_path / "perf_analyzer"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PERF_ANALYZER", str(fake))
    assert pae.find_perf_analyzer() == fake


def test_loader_errors_name_their_fix():
    text = "perf_analyzer: error while loading shared libraries: libb64.so.0d: cannot open shared object file"
    assert "libb64-0d" in pae.explain_failure(text) and "install_system_deps" in pae.explain_failure(text)
    text = "perf_analyzer: error while loading shared libraries: libcudart.so.12: cannot open shared object file"
    assert "nvidia-cuda-runtime-cu12" in pae.explain_failure(text)
    assert pae.explain_failure("Perf Analyzer Version 2.50") is None


# --- a real run against toy models with the ensembles' names and tensors ------------------------------------------

TOY_MODEL = '''
import numpy as np
import triton_python_backend_utils as pb_utils

OUTPUTS = {outputs!r}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            batch = request.inputs()[0].as_numpy().shape[0]
            tensors = [pb_utils.Tensor(name, np.zeros((batch, *shape), dtype)) for name, dtype, shape in OUTPUTS]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
'''


def _toy_repository(root: Path, resolution: int) -> Path:
    for contract in C.ENSEMBLES:
        version = root / contract.name / "1"
        version.mkdir(parents=True)
        lines = [f'name: "{contract.name}"', 'backend: "python"',
                 f"max_batch_size: {C.MAX_FRAME_BATCH if contract.frame_path else 1}"]
        for kind, specs in (("input", contract.inputs), ("output", contract.outputs)):
            for spec in specs:
                dims = " ".join(f"dims: {d}" for d in spec.concrete_shape(resolution))
                lines.append(f'{kind} {{ name: "{spec.name}" data_type: TYPE_{C.TRITON_DTYPE[spec.dtype]} {dims} }}')
        lines.append("instance_group { count: 1 kind: KIND_CPU }")
        (root / contract.name / "config.pbtxt").write_text("\n".join(lines) + "\n")
        outputs = [(s.name, np.dtype(s.dtype).name, s.concrete_shape(resolution)) for s in contract.outputs]
        (version / "model.py").write_text(TOY_MODEL.format(outputs=outputs))
    return root


@pytest.mark.server
def test_perf_ensembles_runs_against_a_server(tmp_path):
    from bodydance.serving.server import EmbeddedTritonServer

    resolution = 32
    repo = _toy_repository(tmp_path / "models", resolution)
    with EmbeddedTritonServer(repo, log_path=tmp_path / "tritonserver.log") as server:
        # A resolution the server does not serve is refused before perf_analyzer runs.
        assert pe.main(["--url", server.grpc_url, "--resolution", "64", "--out-dir", str(tmp_path / "no")]) == 1
        assert not (tmp_path / "no").exists()
        out_csv, rows = pe.run(server.grpc_url, resolution, concurrency=(1, 2), photo_shape=(60, 80, 3),
                               out_dir=tmp_path / "results",
                               measurement=pe.Measurement(interval_ms=500, max_trials=3))
    assert out_csv == tmp_path / "results" / f"perf_ensembles_r{resolution}.csv"
    assert [(r["Model"], r["Concurrency"]) for r in rows] == [
        ("bodydance_subject", "1"), ("bodydance_frame", "1"), ("bodydance_frame", "2")]
    assert all(float(r["Inferences/Second"]) > 0 and int(r["p95 latency"]) > 0 for r in rows)
    assert sorted(p.name for p in out_csv.parent.iterdir()) == [out_csv.name]  # per-run CSVs cleaned up
