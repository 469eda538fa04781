"""The frozen copy for gradient-free forwards: the same function as the model (a hand-folded
BatchNorm), rebuilt when the weights change, never used where it would be wrong."""

import gc
import weakref

import pytest
import torch
from torch import nn

from gradcam_edu import cams, inference
from gradcam_edu.capture import capture, hook_count
from gradcam_edu.inference import inference_forward, inference_status, masked_images

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def images():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def conv_bn() -> nn.Module:
    """1 -> 1 channel, a 1 x 1 conv of weight 2 (no bias), then BatchNorm with gamma 3, beta 1,
    running mean 0.5, running variance 4 - eps: y = (2 x - 0.5) * 3 / 2 + 1 = 3 x + 0.25."""
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1), nn.Flatten(1))
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[1].weight.fill_(3.0)
        model[1].bias.fill_(1.0)
        model[1].running_mean.fill_(0.5)
        model[1].running_var.fill_(4.0 - model[1].eps)
    return model.eval()


def test_the_copy_computes_the_folded_batchnorm_worked_out_by_hand():
    model = conv_bn()
    x = torch.tensor([0.0, 1.0, -2.0, 0.5]).reshape(1, 1, 2, 2)
    with torch.inference_mode():
        out = inference_forward(model, x)
    assert inference_status(model) == "frozen copy"
    torch.testing.assert_close(out, torch.tensor([[0.25, 3.25, -5.75, 1.75]]))
    assert model[1].running_mean.item() == 0.5        # no statistic moved


def test_a_weight_changed_in_place_rebuilds_the_copy():
    model = conv_bn()
    x = torch.ones(1, 1, 1, 1)
    with torch.inference_mode():
        assert inference_forward(model, x).item() == pytest.approx(3.25)
    with torch.no_grad():
        model[0].weight.fill_(4.0)            # y = (4 x - 0.5) * 1.5 + 1 = 6 x + 0.25
    with torch.inference_mode():
        assert inference_forward(model, x).item() == pytest.approx(6.25)
    model.load_state_dict({**model.state_dict(), "1.bias": torch.tensor([0.0])})
    with torch.inference_mode():
        assert inference_forward(model, x).item() == pytest.approx(5.25)


def test_a_users_forward_hook_sees_every_forward():
    model = conv_bn()
    seen = []
    handle = model[1].register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    try:
        with torch.inference_mode():
            inference_forward(model, torch.ones(3, 1, 2, 2))
        assert seen == [3]
        assert inference_status(model) == "the model itself: hooks on 1 must see every forward"
    finally:
        handle.remove()


def test_an_open_capture_does_not_stop_the_copy_and_no_hook_is_left(model, images):
    with capture(model, ["layer4"]) as cap:
        cap.forward(images)
        assert hook_count(model) == 1
        with torch.inference_mode():
            inference_forward(model, images)
        assert inference_status(model) == "frozen copy"
        copy = inference._COPIES[model][1]
    assert hook_count(model) == 0
    assert all(not getattr(m, d) for m in copy.modules() for d in inference.HOOK_DICTS)


class Unscriptable(nn.Module):
    """A forward TorchScript cannot compile (``*args``)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)

    def forward(self, *args):
        return self.conv(args[0]).mean(dim=(2, 3))


def test_a_model_torchscript_cannot_compile_runs_as_itself():
    model = Unscriptable().eval()
    x = torch.rand(2, 1, 3, 3)
    with torch.inference_mode():
        out = inference_forward(model, x)
        torch.testing.assert_close(out, model(x), rtol=0, atol=0)
    assert inference_status(model).startswith("the model itself: TorchScript could not compile")


def test_a_copy_that_disagrees_with_the_model_is_dropped(monkeypatch):
    model = conv_bn()
    monkeypatch.setattr(inference, "_frozen_copy", lambda m: (lambda x: m(x) + 1e-3))
    x = torch.rand(4, 1, 2, 2)
    with torch.inference_mode():
        out = inference_forward(model, x)
        torch.testing.assert_close(out, model(x), rtol=0, atol=0)
    assert inference_status(model) == ("the model itself: its logits differed from the model's "
                                       "on the first batch")


def test_score_cam_through_the_copy_matches_score_cam_through_the_model(model, images,
                                                                        monkeypatch):
    with capture(model, ["layer4"]) as cap:
        cap.forward(images)
        A = cap.activations["layer4"].detach()
    fast = cams.score_cam(model, images, A, 1)
    assert inference_status(model) == "frozen copy"
    monkeypatch.setattr(inference, "_COPIES", weakref.WeakKeyDictionary())
    monkeypatch.setattr(inference, "_frozen_copy", lambda m: 1 / 0)
    slow = cams.score_cam(model, images, A, 1)
    assert inference_status(model) == ("the model itself: TorchScript could not compile it "
                                        "(ZeroDivisionError)")
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-6)


def test_another_device_runs_the_model_there():
    model = conv_bn().to("meta")
    out = inference_forward(model, torch.empty(2, 1, 3, 3, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 9)
    assert inference_status(model, "meta") == ("the model itself: the input is on meta, and the "
                                               "copy is made for the CPU")


def test_the_copy_does_not_keep_the_model_alive():
    model = conv_bn()
    with torch.inference_mode():
        inference_forward(model, torch.ones(1, 1, 1, 1))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None



class Counting(nn.Module):
    """conv_bn(), counting in ``forward`` (a side effect the frozen copy does not keep)."""

    def __init__(self):
        super().__init__()
        self.inner, self.calls = conv_bn(), 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_model_itself_turns_the_copy_off_for_a_block_only():
    model = Counting().eval()
    x = torch.ones(1, 1, 1, 1)
    with torch.inference_mode():
        with inference.model_itself("to compare"):
            assert inference_status(model) == "the model itself: to compare"
            assert inference_forward(model, x).item() == pytest.approx(3.25)
            assert model.calls == 1
        assert inference_forward(model, x).item() == pytest.approx(3.25)  # the copy, checked
        assert inference_forward(model, x).item() == pytest.approx(3.25)  # by one forward
    assert model.calls == 2 and inference_status(model) == "frozen copy"


def test_masked_images_is_the_gathered_product_by_runs_of_one_image():
    """x[index] * masks, worked by hand: image 0 is [1, 2], image 1 is [10, 20]; the runs
    (0, 0), (1), (0) each take one broadcast product."""
    x = torch.tensor([[[[1.0, 2.0]]], [[[10.0, 20.0]]]])             # (2, 1, 1, 2)
    masks = torch.tensor([[[[1.0, 0.0]]], [[[0.5, 0.5]]], [[[0.0, 1.0]]], [[[2.0, 3.0]]]])
    out = masked_images(x, torch.tensor([0, 0, 1, 0]), masks)
    assert out.tolist() == [[[[1.0, 0.0]]], [[[0.5, 1.0]]], [[[0.0, 20.0]]], [[[2.0, 6.0]]]]
    rgb = torch.rand(3, 3, 4, 4)
    index, m = torch.tensor([2, 2, 0, 1, 1, 2]), torch.rand(6, 1, 4, 4)
    assert torch.equal(masked_images(rgb, index, m), rgb[index] * m)
    assert masked_images(rgb, index[:0], m[:0]).shape == (0, 3, 4, 4)
