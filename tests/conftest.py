"""Shared fixtures."""

import pytest
import torch

from gradcam_edu.models import resnet18_narrow
from gradcam_edu.threads import torch_threads


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one torch thread avoids oversubscription when other jobs share the
    cores. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def model():
    """The tests' usual model: a seeded, untrained narrow ResNet-18 (width 8) in eval mode,
    one per test module. A module that needs another model defines its own ``model``."""
    torch.manual_seed(0)
    return resnet18_narrow(width=8).eval()
