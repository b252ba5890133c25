"""A few steps of the plate inpainter's training: person-shaped holes, the production fill, a resumable run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bodydance.training.plate_training import PlateSettings, make_samples, person_shaped_mask, train


def test_holes_are_person_shaped_and_filled_as_the_reconstruction_fills_them():
    settings = PlateSettings(samples=6, resolution=64, seed=4)
    samples = make_samples(settings)
    again = make_samples(settings)
    assert all(np.array_equal(samples[k], again[k]) for k in samples)  # the seed decides
    hole = samples["hole"][:, 0] > 0
    assert 0.01 < hole.mean() < 0.6
    assert np.array_equal(samples["filled"][:, :, ~hole[0]][0], samples["truth"][:, :, ~hole[0]][0])  # outside: untouched
    assert (samples["filled"] != samples["truth"]).any(axis=1)[hole].mean() > 0.5  # inside: refilled
    figure = person_shaped_mask(np.random.default_rng(0), 128)
    rows = np.nonzero(figure.any(1))[0]
    assert figure.any() and rows.ptp() > figure.any(0).sum() * 0.5  # taller than half its width: it stands


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    settings = PlateSettings(steps=4, batch=2, samples=4, resolution=64, checkpoint_every=2)
    samples = make_samples(settings)
    whole = train(samples, tmp_path / "whole", settings)

    def stop_after_two(step, loss):
        if step == 2:
            raise KeyboardInterrupt

    try:
        train(samples, tmp_path / "halves", settings, progress=stop_after_two)
    except KeyboardInterrupt:
        pass
    halves = train(samples, tmp_path / "halves", settings)
    for (name, a), b in zip(whole.state_dict().items(), halves.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_a_run_is_resumed_only_with_its_own_settings(tmp_path):
    import dataclasses

    from typer.testing import CliRunner

    from bodydance.training.__main__ import app
    from bodydance.training.loop import SettingsMismatch, check_same_run
    from bodydance.training.plate_training import PlateSettings
    from bodydance.training.refiner_training import TrainingSettings

    saved = dataclasses.asdict(TrainingSettings())
    check_same_run(tmp_path, saved, TrainingSettings(steps=9000, checkpoint_every=10))  # longer: allowed
    with pytest.raises(SettingsMismatch, match="grey_share 0.2 \\(asked 0.0\\)"):
        check_same_run(tmp_path, saved, TrainingSettings(grey_share=0.0))
    older = {k: v for k, v in saved.items() if k != "style_codes"}  # saved before the setting existed
    check_same_run(tmp_path, older, TrainingSettings())
    with pytest.raises(SettingsMismatch, match="style_codes"):
        check_same_run(tmp_path, older, TrainingSettings(style_codes=True))
    # the command refuses before it makes any data, naming the run and what differs
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"settings": dataclasses.asdict(PlateSettings(batch=4))}, run / "checkpoint.pt")
    result = CliRunner().invoke(app, ["plate", "--run", str(run), "--weights", str(tmp_path / "w.safetensors")])
    assert result.exit_code != 0 and "other settings" in result.output and "batch" in result.output
    assert not (tmp_path / "w.safetensors").exists()
