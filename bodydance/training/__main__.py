"""``python -m bodydance.training``: make the pairs, train the refiner and the plate inpainter, commit their weights.

    python -m bodydance.training data                 # pairs into ~/.cache/bodydance/training (resumes)
    python -m bodydance.training train --steps 4000   # trains (resumes from runs/style_refiner), then
                                                      # writes bodydance/data/style_refiner.safetensors,
                                                      # its log and loss curves (--style-codes: with the
                                                      # region code encoder, a trial that did not ship)
    python -m bodydance.training plate --steps 2000   # the plate inpainter (resumes from runs/plate_inpainter):
                                                      # bodydance/data/plate_inpainter.safetensors, log, curves

On a GPU host the same commands train a larger run (``--batch``, ``--crop``, ``--steps``); training
runs on the CPU unless ``--device cuda`` is given.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bodydance.stages.generator_switch import PLATE_WEIGHTS, WEIGHTS
from bodydance.training.pairs import DEFAULT_FOLDER as DATA
from bodydance_client import contract as C

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])
RUN = Path("runs") / "style_refiner"
CURVES = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "style_refiner_training.png"
PLATE_RUN = Path("runs") / "plate_inpainter"
PLATE_CURVES = CURVES.with_name("plate_inpainter_training.png")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                    TimeRemainingColumn())


@app.command()
def data(folder: Path = typer.Option(DATA, help="where the shards go"),
         train_scenes: int = typer.Option(300, help="training scenes (seeds 0..)"),
         held_out_scenes: int = typer.Option(58, help="held-out scenes (seeds from scenes.HELD_OUT_SEED; 6 of 58 are refused by the reconstruction, 52 remain)"),
         poses: int = typer.Option(4, help="target poses per scene"),
         resolution: int = typer.Option(C.DEFAULT_RESOLUTION)):
    """Render scenes, fit their photos, run the deterministic path: one shard per scene (skips those made)."""
    from bodydance.training.pairs import write_shards
    from bodydance.training.scenes import held_out_seeds, training_seeds

    with _progress() as bar:
        for name, seeds in (("train", training_seeds(train_scenes)), ("held_out", held_out_seeds(held_out_scenes))):
            task = bar.add_task(name, total=len(seeds), note="")
            write_shards(seeds, folder / name, poses, resolution, progress=lambda: bar.advance(task))


@app.command()
def train(folder: Path = typer.Option(DATA / "train", help="training shards"),
          run: Path = typer.Option(RUN, help="checkpoint and log folder (an existing run resumes)"),
          steps: int = typer.Option(4000), batch: int = typer.Option(8), crop: int = typer.Option(128),
          learning_rate: float = typer.Option(1e-3), seed: int = typer.Option(0),
          squared_weight: Optional[float] = typer.Option(
              None, help="weight of the squared error (what PSNR scores) beside L1, SSIM and gradients "
                         "[default: TrainingSettings']"),
          recolour: bool = typer.Option(True, help="shuffle each pair's RGB channels and turn a fifth of them grey"),
          temporal_weight: Optional[float] = typer.Option(
              None, help="weight of the bidirectional flow constraint between each pose and its next frame "
                         "(0: none) [default: TrainingSettings']"),
          style_codes: bool = typer.Option(False, help="train the region code encoder (a KL-regularised code per "
                                                        "part, in region_style[..., 7:16]) with the refiner"),
          device: str = typer.Option("cpu", help="cpu or cuda"),
          weights: Path = typer.Option(WEIGHTS, help="where the trained weights are written")):
    """Train the style refiner (resumable), then write its safetensors weights, log and loss curves."""
    from bodydance.training.pairs import has_next_frames, has_source_parsing, load_shards
    from bodydance.training.loop import export_weights
    from bodydance.training.refiner_training import TrainingSettings
    from bodydance.training.refiner_training import train as train_refiner

    if crop % 16:
        raise typer.BadParameter("must be a multiple of 16", param_hint="--crop")
    if batch < 2 or batch % 2:
        raise typer.BadParameter("must be even: each target pose comes with its next frame", param_hint="--batch")
    shards = load_shards(folder)
    if not shards:
        raise typer.BadParameter(f"no shards in {folder}: run `python -m bodydance.training data` first",
                                 param_hint="--folder")
    if not all(has_next_frames(shard) for shard in shards):
        raise typer.BadParameter(f"{folder} holds shards made before the next frames: run `python -m bodydance.training "
                                 "data` again (it remakes them)", param_hint="--folder")
    if style_codes and not all(has_source_parsing(shard) for shard in shards):
        raise typer.BadParameter(f"{folder} holds shards made before the photo's parsing, which --style-codes reads: "
                                 "run `python -m bodydance.training data` again (it remakes them)", param_hint="--folder")
    settings = TrainingSettings(steps=steps, batch=batch, crop=crop, learning_rate=learning_rate, seed=seed,
                                style_codes=style_codes)
    if squared_weight is not None:
        settings.squared_weight = squared_weight
    if temporal_weight is not None:
        settings.temporal_weight = temporal_weight
    if not recolour:
        settings.grey_share, settings.shuffle_channels = 0.0, False
    _check_resumable(run, settings)
    with _progress() as bar:
        task = bar.add_task("training", total=steps, note="")
        model = train_refiner(shards, run, settings, device=device,
                              progress=lambda step, loss: bar.update(task, completed=step, note=f"loss {loss:.4f}"))
    pairs = sum(len(s["frame"]) for s in shards)
    metadata = {"steps": str(steps), "settings": json.dumps(settings.__dict__), "training_pairs": str(pairs),
                "training_scenes": str(len(shards)), "parameters": str(model.parameter_count())}
    export_weights(model.cpu(), weights, metadata)
    shutil.copyfile(run / "log.csv", weights.with_name(weights.stem + "_log.csv"))
    # Weights written elsewhere than the committed ones are a trial: their curves go beside them.
    plot_curves(run / "log.csv", CURVES if weights == WEIGHTS else weights.with_name(weights.stem + "_training.png"))
    typer.echo(f"{model.parameter_count()} parameters, {pairs} pairs from {len(shards)} scenes -> {weights}")


def _check_resumable(run: Path, settings) -> None:
    from bodydance.training.loop import SettingsMismatch, check_resumable

    try:
        check_resumable(run, settings)
    except SettingsMismatch as error:
        raise typer.BadParameter(str(error), param_hint="--run") from None


@app.command()
def plate(run: Path = typer.Option(PLATE_RUN, help="checkpoint and log folder (an existing run resumes)"),
          steps: int = typer.Option(2000), batch: int = typer.Option(8),
          samples: int = typer.Option(1200, help="distinct (photo crop, hole) samples"),
          learning_rate: float = typer.Option(1e-3), seed: int = typer.Option(0),
          device: str = typer.Option("cpu", help="cpu or cuda"),
          weights: Path = typer.Option(PLATE_WEIGHTS, help="where the trained weights are written")):
    """Train the plate inpainter on package photos with person-shaped holes (resumable), then write its
    safetensors weights, log and loss curves."""
    from bodydance.training.loop import export_weights
    from bodydance.training.plate_training import PlateSettings, make_samples
    from bodydance.training.plate_training import train as train_plate

    settings = PlateSettings(steps=steps, batch=batch, samples=samples, learning_rate=learning_rate, seed=seed)
    _check_resumable(run, settings)
    with _progress() as bar:
        task = bar.add_task("samples", total=None, note="Telea fills")
        data = make_samples(settings)
        bar.update(task, total=1, completed=1, note=f"{samples} samples")
        task = bar.add_task("training", total=steps, note="")
        model = train_plate(data, run, settings, device=device,
                            progress=lambda step, loss: bar.update(task, completed=step, note=f"loss {loss:.4f}"))
    metadata = {"steps": str(steps), "settings": json.dumps(settings.__dict__), "parameters": str(model.parameter_count())}
    export_weights(model.cpu(), weights, metadata)
    shutil.copyfile(run / "log.csv", weights.with_name(weights.stem + "_log.csv"))
    plot_curves(run / "log.csv", PLATE_CURVES, where="the hole")
    typer.echo(f"{model.parameter_count()} parameters, {samples} samples -> {weights}")


def plot_curves(log_csv: Path, target: Path, where: str = "person and rim") -> Path:
    """Loss curves (each term, smoothed over 50 steps) from a training log, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = np.genfromtxt(log_csv, delimiter=",", names=True)
    names = [name for name in ("l1", "squared", "ssim", "gradient", "temporal") if name in rows.dtype.names]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2))
    window = max(1, min(50, len(rows) // 10))
    for axis, name in zip(axes, names):
        values = np.atleast_1d(rows[name])
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axis.plot(np.atleast_1d(rows["step"]), values, alpha=0.25, color="tab:blue")
        axis.plot(np.atleast_1d(rows["step"])[window - 1:], smooth, color="tab:blue")
        axis.set_title(f"{name} (weighted, {where})" if name != "temporal" else "temporal (change along the exact flow)")
        axis.set_xlabel("step")
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


if __name__ == "__main__":
    app()
