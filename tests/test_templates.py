"""Template file format: round trip, bundled dances, and every kind of broken file."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bodydance.skeleton import REST_JOINTS, forward_kinematics
from bodydance_client.errors import BadTemplateError
from bodydance_client.templates import (
    FORMAT, Template, bundled_templates, load_bundled, load_template, resolve_template, save_template,
)


def _valid(frames=10):
    return Template("t", 30.0, np.zeros((frames, 24, 3), np.float32), np.zeros((frames, 3), np.float32))


def _write(path, **overrides):
    fields = dict(format=np.array(FORMAT), version=np.array(1), name=np.array("t"), fps=np.array(30.0),
                  poses=np.zeros((5, 24, 3), np.float32), translations=np.zeros((5, 3), np.float32))
    fields.update(overrides)
    fields = {k: v for k, v in fields.items() if v is not None}
    np.savez(path, **fields)
    return path


def test_round_trip(tmp_path):
    t = _valid()
    t.poses[3, 16, 2] = -1.0
    loaded = load_template(save_template(t, tmp_path / "a.npz"))
    assert loaded.num_frames == 10 and loaded.fps == 30.0
    assert np.array_equal(loaded.poses, t.poses)


def test_bundled_templates_are_long_enough_and_plausible():
    names = bundled_templates()
    assert len(names) >= 3
    for name in names:
        t = load_bundled(name)
        assert t.duration_s >= 4.0, name
        for i in range(0, t.num_frames, 15):
            joints, _ = forward_kinematics(t.poses[i], REST_JOINTS)
            joints = joints + t.translations[i]
            feet = joints[[10, 11], 1]
            assert (feet < joints[0, 1] - 0.5).all(), f"{name} frame {i}: feet not below the pelvis"
            assert joints[15, 1] > joints[0, 1] + 0.4, f"{name} frame {i}: head not above the pelvis"
        # consecutive frames move smoothly (no jumps above ~17 degrees per frame)
        assert np.abs(np.diff(t.poses, axis=0)).max() < 0.3, name


@pytest.mark.parametrize("overrides, words", [
    (dict(poses=np.zeros((5, 23, 3), np.float32)), "24"),
    (dict(poses=np.full((5, 24, 3), np.nan, np.float32)), "NaN"),
    (dict(translations=np.full((5, 3), np.inf, np.float32)), "infinite"),
    (dict(poses=np.zeros((0, 24, 3), np.float32), translations=np.zeros((0, 3), np.float32)), "zero frames"),
    (dict(fps=np.array(0.0)), "fps"),
    (dict(fps=np.array(10000.0)), "fps"),
    (dict(version=np.array(7)), "unknown version"),
    (dict(translations=None), "missing translations"),
    (dict(format=np.array("something-else")), "format"),
    (dict(poses=np.zeros((5, 24, 3), np.int32)), "floating"),
    (dict(poses=np.full((5, 24, 3), 50.0, np.float32)), "angles"),
])
def test_broken_templates_are_refused_with_the_reason(tmp_path, overrides, words):
    path = _write(tmp_path / "bad.npz", **overrides)
    with pytest.raises(BadTemplateError, match=words):
        load_template(path)


def test_pickles_truncation_and_garbage_are_refused(tmp_path):
    pickled = _write(tmp_path / "p.npz", name=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(BadTemplateError, match="pickled"):
        load_template(pickled)
    good = save_template(_valid(), tmp_path / "g.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(BadTemplateError, match="truncated|not a valid"):
        load_template(tmp_path / "cut.npz")
    (tmp_path / "junk.npz").write_bytes(b"hello")
    with pytest.raises(BadTemplateError):
        load_template(tmp_path / "junk.npz")
    with pytest.raises(BadTemplateError, match="no such"):
        load_template(tmp_path / "absent.npz")
    with pytest.raises(BadTemplateError, match="available"):
        resolve_template("no_such_dance")


_VALID_BYTES = io.BytesIO()
np.savez(_VALID_BYTES, format=np.array(FORMAT), version=np.array(1), name=np.array("t"), fps=np.array(30.0),
         poses=np.zeros((3, 24, 3), np.float32), translations=np.zeros((3, 3), np.float32))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=2048),
    st.tuples(st.integers(0, len(_VALID_BYTES.getvalue()) - 1), st.binary(min_size=1, max_size=8)).map(
        lambda cut: _VALID_BYTES.getvalue()[:cut[0]] + cut[1] + _VALID_BYTES.getvalue()[cut[0] + len(cut[1]):]),
))
def test_fuzzed_files_only_ever_raise_bad_template(tmp_path, data):
    path = tmp_path / "fuzz.npz"
    path.write_bytes(data)
    try:
        load_template(path)
    except BadTemplateError:
        pass
