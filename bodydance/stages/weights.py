"""Trained weights in safetensors, loaded into a learned stage's module (the refiner, the plate inpainter)."""

from __future__ import annotations

from pathlib import Path

import torch


def load_file(path: str):
    """The named tensors of a safetensors file."""
    from safetensors.torch import load_file as load

    return load(path)


def load_state(model: torch.nn.Module, state) -> torch.nn.Module:
    """``model`` with ``state`` loaded, in eval mode."""
    model.load_state_dict(state)
    return model.eval()


def read_weights(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    """``model`` with the weights at ``path`` (safetensors), in eval mode."""
    return load_state(model, load_file(str(path)))


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
