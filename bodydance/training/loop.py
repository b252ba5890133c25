"""The resumable training loop every learned stage shares: seeded steps, checkpoints, a CSV log.

Every ``checkpoint_every`` steps the model, optimiser, step and elapsed time go to
``run/checkpoint.pt`` (written whole, then renamed); a run started again continues from there and
drops the log rows past the checkpoint. The learning rate is a function of the step alone and each
step's batch is drawn from the seed and the step number, so a resumed run trains what the
uninterrupted one would have.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch


def learning_rate_at(step: int, settings) -> float:
    """Cosine from ``settings.learning_rate`` down to a twentieth of it over ``settings.steps``."""
    floor = settings.learning_rate / 20
    return floor + 0.5 * (settings.learning_rate - floor) * (1 + math.cos(math.pi * min(step, settings.steps) / settings.steps))


def train_resumably(make_model: Callable[[], torch.nn.Module], run: Path, settings,
                    step_losses: Callable[[torch.nn.Module, int], Dict[str, torch.Tensor]],
                    device: str = "cpu", progress: Optional[Callable[[int, float], None]] = None) -> torch.nn.Module:
    """Train a model made by ``make_model`` (after seeding, so its start is the seed's) or resume it
    from ``run``, to ``settings.steps`` with Adam.

    ``settings`` has ``steps``, ``learning_rate``, ``seed`` and ``checkpoint_every``;
    ``step_losses(model, step)`` draws step ``step``'s batch and returns named losses, ``"total"`` among
    them (the one minimised; the log's first column after the step).
    """
    torch.manual_seed(settings.seed)
    run.mkdir(parents=True, exist_ok=True)
    model = make_model().to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    checkpoint, log_path = run / "checkpoint.pt", run / "log.csv"
    step, elapsed = 0, 0.0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        check_same_run(run, state["settings"], settings)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step, elapsed = state["step"], state["elapsed_s"]
        _truncate_log(log_path, step)
    new_log = not log_path.exists()
    with log_path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        start = time.perf_counter() - elapsed
        model.train()
        while step < settings.steps:
            for group in optimiser.param_groups:
                group["lr"] = learning_rate_at(step, settings)
            loss = step_losses(model, step)
            loss = {"total": loss["total"], **{k: v for k, v in loss.items() if k != "total"}}
            if new_log:
                writer.writerow(["step", *loss, "learning_rate", "elapsed_s"])
                new_log = False
            optimiser.zero_grad()
            loss["total"].backward()
            optimiser.step()
            step += 1
            writer.writerow([step] + [f"{float(v.detach()):.5f}" for v in loss.values()]
                            + [f"{learning_rate_at(step - 1, settings):.6f}", f"{time.perf_counter() - start:.1f}"])
            if step % settings.checkpoint_every == 0 or step == settings.steps:
                handle.flush()
                _save(checkpoint, {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": step,
                                   "elapsed_s": time.perf_counter() - start, "settings": dataclasses.asdict(settings)})
            if progress is not None:
                progress(step, float(loss["total"].detach()))
    return model.eval()


# Settings a resumed run may change: how long it trains and how often it saves.
RESUMABLE_CHANGES = ("steps", "checkpoint_every")


class SettingsMismatch(ValueError):
    """A run folder was started with other training settings than those asked to resume it."""


def check_same_run(run: Path, saved: dict, settings) -> None:
    """Refuse to resume ``run`` (saved with ``saved`` settings) with ``settings`` that differ in more than
    :data:`RESUMABLE_CHANGES`: the checkpoint would go on under other losses or data, or not load at
    all, and the log would mix the two. Settings a run saved before they existed count as their defaults."""
    asked = dataclasses.asdict(settings)
    defaults = dataclasses.asdict(type(settings)())
    differing = {k: ({**defaults, **saved}.get(k), v) for k, v in asked.items()
                 if k not in RESUMABLE_CHANGES and {**defaults, **saved}.get(k) != v}
    if differing:
        listed = ", ".join(f"{k} {was!r} (asked {now!r})" for k, (was, now) in differing.items())
        raise SettingsMismatch(f"{run} was trained with other settings: {listed}; resume it with its own "
                               "settings or start another run folder")


def check_resumable(run: Path, settings) -> None:
    """:func:`check_same_run` against ``run``'s checkpoint, when it has one (before any data is made)."""
    checkpoint = run / "checkpoint.pt"
    if checkpoint.exists():
        check_same_run(run, torch.load(checkpoint, map_location="cpu", weights_only=True)["settings"], settings)


def _save(path: Path, state: dict) -> None:
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.rename(path)


def _truncate_log(log_path: Path, step: int) -> None:
    """Drop log rows past the checkpoint's step (they are trained again on resume)."""
    if not log_path.exists():
        return
    with log_path.open() as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
    with log_path.open("w", newline="") as handle:
        csv.writer(handle).writerows(kept)


def export_weights(model: torch.nn.Module, target: Path, metadata: Optional[Dict[str, str]] = None) -> Path:
    """A model's weights as safetensors (what the export loads)."""
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(target), metadata=metadata or {})
    return target
