"""The switches between each learned part and its stand-in: the refiner and the plate inpainter, both
off by default; each is part of the export fingerprint, so a changed switch re-exports."""

from __future__ import annotations

import pytest

from bodydance.stages import generator_switch as S, plate_inpainter, refiner

# (environment variable, learned, stand-in, default, the loader, the module it loads)
SWITCHES = {
    "refiner": (S.GENERATOR_ENV, "learned", "deterministic", "deterministic", refiner.load_refiner, refiner.FrameRefiner),
    "plate": (S.PLATE_ENV, "learned", "telea", "telea", plate_inpainter.load_inpainter, plate_inpainter.PlateInpainter),
}


@pytest.mark.parametrize("name", SWITCHES)
def test_each_switch_loads_the_weights_or_falls_back_to_its_stand_in(name, monkeypatch, tmp_path):
    from safetensors.torch import save_file

    env, learned, stand_in, default, load, module = SWITCHES[name]
    weights = tmp_path / "weights.safetensors"
    save_file(module().state_dict(), str(weights))
    monkeypatch.delenv(env, raising=False)
    assert isinstance(load(weights), module) == (default == learned)
    monkeypatch.setenv(env, learned)
    assert isinstance(load(weights), module)
    assert load(tmp_path / "missing.safetensors") is None  # no weights: the stand-in
    monkeypatch.setenv(env, stand_in)
    assert load(weights) is None
    monkeypatch.setenv(env, "neither")
    with pytest.raises(ValueError, match=f"must be one of {learned}, {stand_in}"):
        load(weights)


@pytest.mark.parametrize("name", SWITCHES)
def test_the_export_fingerprint_follows_each_switch(name, monkeypatch):
    from bodydance_export.fingerprint import source_fingerprint

    env, learned, stand_in, *_ = SWITCHES[name]
    monkeypatch.setenv(env, learned)
    with_learned = source_fingerprint()
    monkeypatch.setenv(env, stand_in)
    assert source_fingerprint() != with_learned
