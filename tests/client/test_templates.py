"""Template file format: round trip, bundled dances (and their physical plausibility), and every kind of broken file."""

import io
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from bodydance.skeleton import REST_JOINTS, pose_skeleton
from bodydance_client.contract import JOINT_NAMES
from bodydance_client.errors import BadTemplateError
from bodydance_client.templates import (
    FORMAT, MAX_FRAMES, Template, bundled_templates, load_bundled, load_template, resolve_template, save_template,
)

J = {name: i for i, name in enumerate(JOINT_NAMES)}
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid(frames=10):
    return Template("t", 30.0, np.zeros((frames, 24, 3), np.float32), np.zeros((frames, 3), np.float32))


def _fields(**overrides):
    fields = dict(format=np.array(FORMAT), version=np.array(1), name=np.array("t"), fps=np.array(30.0),
                  poses=np.zeros((5, 24, 3), np.float32), translations=np.zeros((5, 3), np.float32))
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def _write(path, **overrides):
    np.savez(path, **_fields(**overrides))
    return path


def _npz_bytes(**overrides):
    buf = io.BytesIO()
    np.savez(buf, **_fields(**overrides))
    return buf.getvalue()


# --- round trip -----------------------------------------------------------------------


def test_round_trip(tmp_path):
    t = Template("round trip", 29.97, np.random.default_rng(0).uniform(-1, 1, (10, 24, 3)).astype(np.float32),
                 np.linspace(0, 0.3, 30, dtype=np.float32).reshape(10, 3))
    path = save_template(t, tmp_path / "sub" / "a.npz")
    assert [p.name for p in path.parent.iterdir()] == ["a.npz"]  # no temp file left behind
    loaded = load_template(path)
    assert (loaded.name, loaded.fps, loaded.num_frames) == ("round trip", 29.97, 10)
    assert loaded.poses.dtype == np.float32 and loaded.translations.dtype == np.float32
    assert np.array_equal(loaded.poses, t.poses) and np.array_equal(loaded.translations, t.translations)
    assert loaded.duration_s == pytest.approx(10 / 29.97)


def test_save_overwrites_atomically_and_refuses_invalid(tmp_path):
    path = save_template(_valid(4), tmp_path / "a.npz")
    save_template(_valid(7), path)
    assert load_template(path).num_frames == 7
    with pytest.raises(BadTemplateError, match="NaN"):
        save_template(Template("t", 30.0, np.full((3, 24, 3), np.nan, np.float32), np.zeros((3, 3), np.float32)),
                      path)
    assert load_template(path).num_frames == 7  # the old file is untouched


def test_resolve_accepts_names_paths_and_templates(tmp_path):
    path = save_template(_valid(), tmp_path / "mine.npz")
    assert resolve_template(str(path)).num_frames == 10
    assert resolve_template(path).num_frames == 10
    assert resolve_template("wave").name == "wave"
    t = _valid()
    assert resolve_template(t) is t
    with pytest.raises(BadTemplateError, match="available: .*wave"):
        resolve_template("no_such_dance")
    with pytest.raises(BadTemplateError, match="no such"):
        resolve_template(str(tmp_path / "absent.npz"))


# --- bundled dances -------------------------------------------------------------------


def _posed(t):
    joints, rotations = zip(*(pose_skeleton(p, REST_JOINTS) for p in t.poses))
    return np.stack(joints) + t.translations[:, None], np.stack(rotations)


def test_bundled_templates_load_and_are_small():
    names = bundled_templates()
    assert len(names) >= 3 and {"wave", "disco", "squat_spin"} <= set(names)
    assert sum(path.stat().st_size for path in names.values()) < 300_000
    for name, path in names.items():
        t = load_bundled(name)
        assert t.name == name and t.fps == 30.0 and t.duration_s >= 4.0, name
        assert load_template(path).num_frames == t.num_frames


@pytest.mark.parametrize("name", sorted(bundled_templates()))
def test_bundled_dance_is_physically_plausible(name):
    t = load_bundled(name)
    joints, rotations = _posed(t)
    assert np.isfinite(joints).all()
    ground = REST_JOINTS[[J["left_foot"], J["right_foot"]], 1].min()
    pelvis = joints[:, J["pelvis"]]
    feet = joints[:, [J["left_ankle"], J["right_ankle"], J["left_foot"], J["right_foot"]]]
    # feet roughly below the pelvis, on (or, for a hop, just above) the ground
    assert (feet[..., 1] < pelvis[:, None, 1] - 0.5).all()
    assert (np.abs(feet[..., 0] - pelvis[:, None, 0]) < 0.45).all()
    lowest = feet[..., 1].min(axis=1) - ground
    assert lowest.min() > -0.03 and lowest.max() < 0.12, (lowest.min(), lowest.max())
    # head above the pelvis; hands never below the knees (none of the dances squats that deep)
    assert (joints[:, J["head"], 1] > pelvis[:, 1] + 0.4).all()
    hands = joints[:, [J["left_hand"], J["right_hand"]], 1].min(axis=1)
    knees = joints[:, [J["left_knee"], J["right_knee"]], 1].max(axis=1)
    assert (hands > knees).all()
    # knees only flex backwards, hips flex forwards
    for side in ("left", "right"):
        assert t.poses[:, J[f"{side}_knee"], 0].min() >= 0.0
        assert t.poses[:, J[f"{side}_hip"], 0].max() <= 0.05
    # elbows bend forwards, up or down, never backwards past the upper arm
    for side in ("left", "right"):
        upper = rotations[:, J[f"{side}_shoulder"]]
        forearm = joints[:, J[f"{side}_wrist"]] - joints[:, J[f"{side}_elbow"]]
        local = np.einsum("tji,tj->ti", upper, forearm) / np.linalg.norm(forearm, axis=1, keepdims=True)
        assert local[:, 2].min() > -0.1, f"{side} elbow bends backwards"
    # the face stays towards the camera (turns of at most 60 degrees)
    forward = rotations[:, J["head"], :, 2]
    assert np.degrees(np.arctan2(np.abs(forward[:, 0]), forward[:, 2])).max() <= 60.0
    # hands are clear of the torso in the 2D front view most of the time
    for hand in ("left_hand", "right_hand"):
        clear = np.abs(joints[:, J[hand], 0] - pelvis[:, 0]) > 0.22
        assert clear.mean() > 0.5, f"{hand} is in front of the torso {1 - clear.mean():.0%} of the time"
    # smooth, and looping cleanly: the last frame leads back to the first like any other step
    steps = np.abs(np.diff(t.poses, axis=0)).max(axis=(1, 2))
    wrap = np.abs(t.poses[0] - t.poses[-1]).max()
    assert steps.max() < 0.3 and wrap <= steps.max() + 1e-4
    assert np.abs(t.translations[0]).max() < 0.1 and np.abs(t.translations[0] - t.translations[-1]).max() < 0.05


# --- broken files ---------------------------------------------------------------------


@pytest.mark.parametrize("overrides, words", [
    (dict(poses=np.zeros((5, 23, 3), np.float32)), r"\[frames, 24, 3\].*got \[5, 23, 3\]"),
    (dict(poses=np.zeros((5, 24), np.float32)), "24, 3"),
    (dict(translations=np.zeros((4, 3), np.float32)), "translations must be"),
    (dict(poses=np.full((5, 24, 3), np.nan, np.float32)), "poses contains NaN"),
    (dict(translations=np.full((5, 3), np.inf, np.float32)), "translations contains NaN or infinite"),
    (dict(poses=np.zeros((0, 24, 3), np.float32), translations=np.zeros((0, 3), np.float32)), "zero frames"),
    (dict(poses=np.zeros((MAX_FRAMES + 1, 24, 3), np.float32),
          translations=np.zeros((MAX_FRAMES + 1, 3), np.float32)), "the limit is"),
    (dict(fps=np.array(0.0)), "fps 0 is outside"),
    (dict(fps=np.array(10000.0)), "fps 10000 is outside"),
    (dict(fps=np.array("thirty")), "not a number"),
    (dict(version=np.array(7)), "unknown version 7"),
    (dict(version=np.array(1.5)), "version must be an integer"),
    (dict(translations=None), "missing key.*translations"),
    (dict(poses=None, fps=None), "missing key.*fps, poses"),
    (dict(format=np.array("something-else")), "format marker"),
    (dict(poses=np.zeros((5, 24, 3), np.int32)), "floating"),
    (dict(poses=np.full((5, 24, 3), 50.0, np.float32)), "absurd joint angles"),
    (dict(translations=np.full((5, 3), 20.0, np.float32)), "translations move the body"),
    (dict(name=np.array("x" * 65)), "name is 65 characters"),
    (dict(name=np.array("")), "name is 0 characters"),
    (dict(name=np.array(3)), "name must be"),
    (dict(fps=np.array([30.0, 30.0])), "fps must be a single value"),
])
def test_broken_templates_are_refused_with_the_reason(tmp_path, overrides, words):
    path = _write(tmp_path / "bad.npz", **overrides)
    with pytest.raises(BadTemplateError, match=words) as err:
        load_template(path)
    assert str(path) in str(err.value)


def test_pickle_bearing_npz_is_refused(tmp_path):
    path = _write(tmp_path / "p.npz", name=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(BadTemplateError, match="pickled objects, which are refused"):
        load_template(path)
    # a bare pickle renamed to .npz is not even a zip
    (tmp_path / "raw.npz").write_bytes(b"\x80\x04\x95" + b"\0" * 20)
    with pytest.raises(BadTemplateError, match="not a zip"):
        load_template(tmp_path / "raw.npz")


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9, 0.99])
def test_truncated_file_is_refused(tmp_path, keep):
    good = save_template(_valid(), tmp_path / "g.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: int(len(good) * keep)])
    with pytest.raises(BadTemplateError, match="truncated"):
        load_template(tmp_path / "cut.npz")


def test_not_a_zip_empty_and_missing_files_are_refused(tmp_path):
    for name, data in (("junk.npz", b"hello, I am not a template"), ("empty.npz", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BadTemplateError, match="not a zip") as err:
            load_template(tmp_path / name)
        assert name in str(err.value)
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros((5, 24, 3), np.float32))
    with pytest.raises(BadTemplateError, match="not a zip"):
        load_template(npy)
    with pytest.raises(BadTemplateError, match="no such"):
        load_template(tmp_path / "absent.npz")
    with pytest.raises(BadTemplateError, match="no such"):
        load_template(tmp_path)  # a directory


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    import bodydance_client.templates as templates

    path = save_template(_valid(), tmp_path / "a.npz")
    monkeypatch.setattr(templates, "MAX_FILE_BYTES", 100)
    with pytest.raises(BadTemplateError, match="the limit is 100"):
        load_template(path)


def _npy(array=None, header=None):
    buf = io.BytesIO()
    if header is None:
        np.save(buf, array)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(b"\0" * 64)
    return buf.getvalue()


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_header_claiming_a_huge_array_is_refused_without_allocating(tmp_path):
    members = {f"{k}.npy": _npy(v) for k, v in _fields(poses=None).items()}
    members["poses.npy"] = _npy(header={"descr": "<f4", "fortran_order": False, "shape": (10**12, 24, 3)})
    with pytest.raises(BadTemplateError, match="claims a .* array"):
        load_template(_zip(tmp_path / "bomb.npz", members))
    members["poses.npy"] = _npy(header={"descr": "<U100000000", "fortran_order": False, "shape": ()})
    with pytest.raises(BadTemplateError, match="claims"):
        load_template(_zip(tmp_path / "bomb2.npz", members))
    members["poses.npy"] = _npy(header={"descr": "<U1000000000", "fortran_order": False, "shape": ()})
    with pytest.raises(BadTemplateError, match="negative size"):
        load_template(_zip(tmp_path / "bomb3.npz", members))


def test_member_that_is_not_an_array_is_refused(tmp_path):
    members = {f"{k}.npy": _npy(v) for k, v in _fields().items()}
    members["poses.npy"] = b"just some bytes"
    with pytest.raises(BadTemplateError, match="poses is not a .npy array"):
        load_template(_zip(tmp_path / "raw.npz", members))


# --- fuzz -----------------------------------------------------------------------------

_VALID_BYTES = _npz_bytes(poses=np.zeros((3, 24, 3), np.float32), translations=np.zeros((3, 3), np.float32))


def _mutate(edits):
    data = bytearray(_VALID_BYTES)
    for position, chunk in edits:
        position %= len(data)
        data[position:position + len(chunk)] = chunk
    return bytes(data)


_fuzz_bytes = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=512).map(lambda tail: b"PK\x03\x04" + tail),
    st.lists(st.tuples(st.integers(0, len(_VALID_BYTES) - 1), st.binary(min_size=1, max_size=8)),
             min_size=1, max_size=4).map(_mutate),
    st.integers(0, len(_VALID_BYTES) - 1).map(lambda cut: _VALID_BYTES[:cut]),
)


def _expect_bad_or_valid(path):
    try:
        t = load_template(path)
    except BadTemplateError as err:
        assert str(path) in str(err)
        return
    assert isinstance(t, Template) and t.poses.dtype == np.float32 and np.isfinite(t.poses).all()


@FUZZ
@given(data=_fuzz_bytes)
def test_fuzzed_bytes_only_ever_raise_bad_template(tmp_path, data):
    path = tmp_path / "fuzz.npz"
    path.write_bytes(data)
    _expect_bad_or_valid(path)


_any_array = hnp.arrays(
    dtype=st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.boolean_dtypes(), hnp.complex_number_dtypes(),
                    hnp.unicode_string_dtypes(max_len=4), hnp.byte_string_dtypes(max_len=4)),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
_field_values = {
    "format": st.one_of(st.just(np.array(FORMAT)), _any_array),
    "version": st.one_of(st.just(np.array(1)), _any_array),
    "name": st.one_of(st.text(max_size=80).map(np.array), _any_array),
    "fps": st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(np.array), _any_array),
    "poses": st.one_of(hnp.arrays(np.float32, (3, 24, 3), elements=st.floats(-7, 7, width=32)),
                       hnp.arrays(np.float64, st.tuples(st.integers(0, 3), st.sampled_from([23, 24]), st.just(3))),
                       _any_array),
    "translations": st.one_of(hnp.arrays(np.float32, (3, 3), elements=st.floats(-12, 12, width=32)), _any_array),
}


@FUZZ
@given(fields=st.fixed_dictionaries({}, optional=_field_values))
def test_fuzzed_fields_only_ever_raise_bad_template(tmp_path, fields):
    path = tmp_path / "fields.npz"
    np.savez(path, **fields)
    _expect_bad_or_valid(path)
