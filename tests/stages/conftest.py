"""Fixtures the stage tests share."""

import pytest


@pytest.fixture(scope="module")
def reconstructor():
    """One MediaPipe reconstructor at 256 px (the graphs take a second to load)."""
    from bodydance.stages.reconstruction.subject import Reconstructor

    with Reconstructor(resolution=256) as rec:
        yield rec
