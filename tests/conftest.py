"""Shared fixtures."""

import pytest

from gradcam_edu.threads import torch_threads


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one torch thread avoids oversubscription when other jobs share the
    cores. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with torch_threads(1):
        yield
