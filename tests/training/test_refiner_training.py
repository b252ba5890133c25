"""A few steps of the refiner's training: the loss falls on one batch, and a resumed run is the same run."""

from __future__ import annotations

import csv

import pytest
import torch

from bodydance.training.pairs import load_shards, write_shards
from bodydance.training.loop import export_weights
from bodydance.training.refiner_training import TrainingSettings, draw_batch, losses, temporal_loss, train, warp

N = 128


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    write_shards([1, 2], folder, poses_per_scene=2, resolution=N)
    return load_shards(folder)


@pytest.mark.parametrize("style_codes", [False, True], ids=["refiner", "with style codes"])
def test_an_interrupted_run_resumes_where_it_stopped(shards, tmp_path, style_codes):
    settings = TrainingSettings(steps=4, batch=2, crop=64, checkpoint_every=2, style_codes=style_codes)
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
    (frame, background, *planes, truth, region, unseen), *_ = draw_batch(shards, settings, 0)
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


def test_the_photos_come_whole_recoloured_and_flipped_as_their_crops(shards):
    from bodydance.stages.style_codes import parts_onehot

    settings = TrainingSettings(batch=4, crop=64)
    for step in range(4):
        columns, _, (sources, onehots) = draw_batch(shards, settings, step)
        assert sources.shape == (2, 3, N, N) and onehots.shape == (2, 8, N, N)
        assert torch.equal(onehots.sum(1), torch.ones(2, N, N))
        # each photo is one of the shards', its parsing as stored, flipped or not with its channels in some order
        for source, onehot in zip(sources, onehots):
            matches = []
            for shard in shards:
                stored = parts_onehot(torch.from_numpy(shard["source_parsing"])[None])[0]
                for flipped in (stored, stored.flip(-1)):
                    matches.append(torch.equal(onehot, flipped))
            assert any(matches)
        assert 0.0 <= float(sources.min()) and float(sources.max()) <= 1.0


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


def test_the_exact_flow_in_a_crop_carries_the_next_frame_onto_the_pose_flipped_or_not(shards):
    # Over several steps' crops (some flipped), where the surface moves, the truth's next frame sampled
    # along the crop's flow matches the pose's truth far better than left where it is: the flow survives
    # cropping, flipping and the reordering of the batch.
    warped_error, still_error = [], []
    for step in range(6):
        columns, flows, _ = draw_batch(shards, TrainingSettings(batch=4, crop=64), step)
        truth = columns[-3]
        h = truth.shape[0] // 2
        for (flow, shown), (a, b) in zip(flows, ((truth[:h], truth[h:]), (truth[h:], truth[:h]))):
            assert flow.shape == (h, 2, 64, 64) and shown.shape == (h, 1, 64, 64)
            assert ((flow >= 0) & (flow <= 63)).all(1, keepdim=True)[shown > 0].all()
            identity = torch.stack(torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="xy"))[None]
            moves = (flow - identity).norm(dim=1, keepdim=True) > 1.0  # points that move more than a pixel
            mask = ((shown > 0) & moves).expand_as(a)
            warped_error.append((a - warp(b, flow)).abs()[mask])
            still_error.append((a - b).abs()[mask])
    warped, still = torch.cat(warped_error), torch.cat(still_error)
    assert len(warped) > 300
    assert float(warped.mean()) < 0.6 * float(still.mean())


def test_the_temporal_loss_asks_for_the_truths_change_and_not_for_stillness(shards):
    columns, flows, _ = draw_batch(shards, TrainingSettings(batch=4, crop=64), 1)
    truth = columns[-3]
    h = truth.shape[0] // 2
    assert float(temporal_loss(truth, truth, flows)) < 1e-6  # the truth changes as the truth does
    flat = truth.mean((2, 3), keepdim=True).expand_as(truth)  # a frame that never changes along the flow
    assert float(temporal_loss(flat, truth, flows)) > 0.01
    flicker = truth.clone()
    flicker[h:] = (flicker[h:] + 0.2).clamp(0, 1)  # the next frames brighten: flicker along the flow
    assert float(temporal_loss(flicker, truth, flows)) > 0.1


def test_the_train_command_refuses_an_odd_batch_and_shards_it_cannot_train_on(tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from bodydance.training.__main__ import app

    runner = CliRunner()
    odd = runner.invoke(app, ["train", "--batch", "3", "--folder", str(tmp_path), "--run", str(tmp_path / "run")])
    assert odd.exit_code != 0 and "must be even" in odd.output
    # a shard as `data` wrote them before the next frames: refused with what to run, nothing trained
    np.savez(tmp_path / "seed_0.npz", frame=np.zeros((1, 8, 8, 3), np.uint8))
    old = runner.invoke(app, ["train", "--folder", str(tmp_path), "--run", str(tmp_path / "run")])
    assert old.exit_code != 0 and "made before the next frames" in old.output
    # shards with next frames but not the photo's parsing: the style codes cannot train on them
    np.savez(tmp_path / "seed_0.npz", frame=np.zeros((1, 8, 8, 3), np.uint8), flow_to_next=np.zeros((1, 8, 8, 2)))
    no_parsing = runner.invoke(app, ["train", "--style-codes", "--folder", str(tmp_path), "--run", str(tmp_path / "run")])
    assert no_parsing.exit_code != 0 and "made before the photo's parsing" in no_parsing.output
    assert not (tmp_path / "run").exists()
