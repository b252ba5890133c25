"""A few steps of the refiner's training: the loss falls on one batch, and a resumed run is the same run."""

from __future__ import annotations

import csv

import pytest
import torch

from bodydance.training.pairs import load_shards, write_shards
from bodydance.training.loop import export_weights
from bodydance.training.refiner_training import TrainingSettings, draw_batch, losses, train

N = 128


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    write_shards([1, 2], folder, poses_per_scene=2, resolution=N)
    return load_shards(folder)


def test_an_interrupted_run_resumes_where_it_stopped(shards, tmp_path):
    settings = TrainingSettings(steps=4, batch=2, crop=64, checkpoint_every=2)
    whole = train(shards, tmp_path / "whole", settings)

    def stop_after_two(step, loss):
        if step == 2:
            raise KeyboardInterrupt  # a user pressing Ctrl-C after the step-2 checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(shards, tmp_path / "halves", settings, progress=stop_after_two)
    halves = train(shards, tmp_path / "halves", settings)  # picks up at step 2, draws the same batches
    for (name, a), b in zip(whole.state_dict().items(), halves.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    with (tmp_path / "halves" / "log.csv").open() as handle:
        steps = [int(r["step"]) for r in csv.DictReader(handle)]
    assert steps == [1, 2, 3, 4]


def test_the_loss_falls_when_fitting_one_batch(shards, tmp_path):
    from bodydance.stages.refiner import FrameRefiner

    settings = TrainingSettings(batch=4, crop=64)
    frame, background, *planes, truth, region, unseen = draw_batch(shards, settings, 0)
    torch.manual_seed(0)
    model = FrameRefiner()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(40):
        loss = losses(model(frame, background, *planes)[0], truth, region, unseen)["total"]
        first = float(loss) if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float(loss) < 0.97 * first
    # the weights a run writes load back into the refiner
    from bodydance.stages.refiner import read_refiner

    path = export_weights(model, tmp_path / "refiner.safetensors", {"steps": "15"})
    loaded = read_refiner(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_recolouring_moves_every_image_and_the_part_statistics_together():
    from bodydance.training.refiner_training import LUMA, recolour

    g = torch.Generator().manual_seed(0)
    image, other = torch.rand(1, 3, 8, 8, generator=g), torch.rand(1, 3, 8, 8, generator=g)
    style = torch.rand(1, 6, 8, 8, generator=g)
    (shuffled, other_shuffled), style_shuffled = recolour([image, other], style, [2, 0, 1], grey=False)
    assert torch.equal(shuffled[:, 0], image[:, 2]) and torch.equal(other_shuffled[:, 1], other[:, 0])
    assert torch.equal(style_shuffled[:, 0], style[:, 2]) and torch.equal(style_shuffled[:, 4], style[:, 3 + 0])
    (grey, _), style_grey = recolour([image, other], style, [0, 1, 2], grey=True)
    luma = sum(w * image[:, k] for k, w in enumerate(LUMA))
    assert torch.allclose(grey[:, 0], luma) and torch.equal(grey[:, 0], grey[:, 2])
    assert torch.allclose(style_grey[:, 0], sum(w * style[:, k] for k, w in enumerate(LUMA)))
    assert torch.equal(style_grey[:, 3], style_grey[:, 5])
