"""A few steps of the plate inpainter's training: person-shaped holes, the production fill, a resumable run."""

from __future__ import annotations

import numpy as np
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
