"""Bad input through the client and the real server: typed errors, nothing left behind, the server stays up."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from bodydance_client.errors import BadImageError, NoPersonError
from bodydance_client.images import UPLOAD_SIDE, load_photo


def _png(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **kw)
    return buf.getvalue()


@pytest.mark.server
def test_a_person_too_small_is_refused_by_name(client, subject):
    canvas = Image.new("RGB", (2000, 2000), (200, 200, 200))
    canvas.paste(Image.fromarray(subject.photo).resize((90, 90)), (100, 1800))
    with pytest.raises(NoPersonError):
        client.prepare(canvas)
    assert client.prepare(subject.photo).person_count >= 1  # and the server still serves


@pytest.mark.server
def test_grey_rgba_and_16_bit_photos_go_through(client, subject):
    grey = Image.fromarray(subject.photo).convert("L")
    rgba = Image.fromarray(subject.photo).convert("RGBA")
    sixteen = Image.fromarray((np.asarray(grey).astype(np.int32) * 257)).convert("I;16")
    for image in (grey, rgba, sixteen):
        prepared = client.prepare(_png(image))
        assert prepared.person_count == 1 and prepared.photo.shape == subject.photo.shape


@pytest.mark.server
def test_an_exif_rotated_photo_comes_out_upright(client, subject):
    stored = Image.fromarray(np.rot90(subject.photo, k=1).copy())  # pixels stored on their side
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", exif=exif, quality=92)
    upright = client.prepare(buf.getvalue())
    assert upright.photo.shape == subject.photo.shape
    # fitted like the upright original (JPEG re-encoding moves it a little), not turned on its side
    assert np.allclose(upright.tensors["camera"], subject.tensors["camera"], rtol=0.1, atol=0.05)
    assert abs(float(upright.tensors["source_pose"][0, 0, 2])) < 0.5  # no roll about the view axis


@pytest.mark.server
def test_huge_photos_are_reduced_not_fatal(client):
    huge = Image.new("RGB", (10000, 10000), (90, 120, 150))
    data = _png(huge)
    assert load_photo(data).shape == (UPLOAD_SIDE, UPLOAD_SIDE, 3)
    with pytest.raises(NoPersonError):  # decoded, shrunk, sent, and answered: no person in a flat colour
        client.prepare(data)


@pytest.mark.server
def test_a_mannequin_like_render_does_not_crash(client):
    sys.path.insert(0, "benchmarks")
    from synthetic_transfer import Scene, source_pose

    from bodydance.body import BodyModel, load_open_body_arrays

    rng = np.random.default_rng(7)
    photo, _, _ = Scene(BodyModel.open_body(), load_open_body_arrays(), rng).render(source_pose(rng))
    try:
        prepared = client.prepare(photo)
        assert np.isfinite(prepared.tensors["source_pose"]).all()
    except NoPersonError:
        pass


@pytest.mark.server
def test_cli_refuses_a_broken_template_before_any_work(server, astronaut_path, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, poses=np.zeros((3, 23, 3)))
    run = subprocess.run([sys.executable, "-m", "bodydance_client.cli", "animate", str(astronaut_path), "-t", str(bad),
                          "-o", "v.mp4", "--url", server.grpc_url], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and "bad_template" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


_SEED_IMAGES = [_png(Image.new("RGB", (40, 30), (10, 200, 30))),
                _png(Image.new("L", (33, 17), 9)),
                _png(Image.new("RGBA", (20, 20), (1, 2, 3, 4)))]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(
    st.binary(max_size=4096),
    st.tuples(st.sampled_from(_SEED_IMAGES), st.integers(0, 200), st.binary(min_size=1, max_size=16)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):]),
))
def test_fuzzed_photos_only_ever_raise_bad_image(data):
    try:
        image = load_photo(data)
    except BadImageError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
