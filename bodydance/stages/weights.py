"""Trained weights in safetensors, loaded into a learned stage's module (the refiner, the plate inpainter)."""

from __future__ import annotations

from pathlib import Path

import torch


def read_weights(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    """``model`` with the weights at ``path`` (safetensors), in eval mode."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))
    return model.eval()


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
