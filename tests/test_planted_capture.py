"""Capture names of a module that runs several times keep the order of the calls."""

import pytest
import torch

from gradcam_edu.capture import capture
from gradcam_edu.models import resnet18_narrow

pytestmark = pytest.mark.usefixtures("one_thread")


def test_layer_names_order_each_call_where_it_ran():
    # a BasicBlock: conv1, bn1, relu (call 0), conv2, bn2, relu (call 1)
    torch.manual_seed(0)
    model = resnet18_narrow(width=8).eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with capture(model, ["layer1.0.relu#1", "layer1.0.conv2", "layer1.0.relu#0"]) as cap:
        cap.forward(x)
        assert cap.layer_names == ["layer1.0.relu#0", "layer1.0.conv2", "layer1.0.relu#1"]
