"""Fixtures the stage tests share."""

import pytest


@pytest.fixture(scope="module")
def reconstructor():
    """One MediaPipe reconstructor at 256 px (the graphs take a second to load)."""
    from bodydance.stages.reconstruction.subject import Reconstructor

    with Reconstructor(resolution=256) as rec:
        yield rec


@pytest.fixture
def randomised():
    """``randomised(model, seed=0)``: ``model`` with every weight drawn at random (seeded, std 0.05),
    so a learned part's output is far from its start at the identity."""
    import torch

    def draw(model, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        return model.eval()

    return draw
