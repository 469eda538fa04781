"""The checkers of notebooks 01 and 02 accept a right answer and reject a wrong one with a
message that says what to fix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradcam_edu import cams, models
from gradcam_edu.exercises import nb01, nb02
from gradcam_edu.scoreboard import scoreboard

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- nb01
@pytest.fixture(scope="module")
def AG():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 5, 4, 4, generator=gen), torch.randn(2, 5, 4, 4, generator=gen)


def test_verdict_is_truthy_and_readable():
    assert nb01.Verdict(True, "ok") and not nb01.Verdict(False, "no")
    assert str(nb01.Verdict(False, "fix it")) == "Not yet: fix it"
    assert repr(nb01.Verdict(True, "fine")).startswith("Correct!")


def test_channel_weights_right(AG):
    A, G = AG
    assert nb01.check_channel_weights(G.mean(dim=(2, 3)), G)


@pytest.mark.parametrize("wrong, words", [
    (lambda G: G.sum(dim=(2, 3)), "sum over positions"),
    (lambda G: G.mean(dim=(2, 3), keepdim=True), "keepdim"),
    (lambda G: G.mean(dim=0), "batch axis"),
    (lambda G: G.abs().mean(dim=(2, 3)), "sign"),
    (lambda G: G.mean(dim=(1, 2)), "shape"),
    (lambda G: [1.0], "tensor"),
])
def test_channel_weights_wrong(AG, wrong, words):
    A, G = AG
    verdict = nb01.check_channel_weights(wrong(G), G)
    assert not verdict and words in verdict.message


def _right_grad_cam(A, G, size):
    return cams.finalize(cams.grad_cam(A, G), size)


def test_grad_cam_right():
    assert nb01.check_grad_cam(_right_grad_cam)


def _no_eps(A, G, size):
    w = (G.mean(dim=(2, 3))[:, :, None, None] * A).sum(1).clamp(min=0)
    w = (w - w.amin(dim=(1, 2), keepdim=True)) / w.amax(dim=(1, 2), keepdim=True)
    return F.interpolate(w[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _in_place(A, G, size):
    out = _right_grad_cam(A, G, size)
    G.clamp_(min=0)                    # a stray in-place op on the caller's tensor
    return out


@pytest.mark.parametrize("wrong, words", [
    (lambda A, G, size: cams.finalize(cams.grad_cam(A, G)), "upsample"),
    (lambda A, G, size: cams.finalize(cams.grad_cam(A, G), size, relu=False), "ReLU"),
    (_no_eps, "NaN"),
    (lambda A, G, size: F.interpolate(cams.finalize(cams.grad_cam(A, G))[:, None], size=size,
                                      mode="bilinear", align_corners=True)[:, 0],
     "align_corners"),
    (lambda A, G, size: _right_grad_cam(A, G, size)[0], "batch axis"),
    (lambda A, G, size: _right_grad_cam(A, G, size).numpy(), "tensor"),
    (lambda A, G, size: 1 / 0, "ZeroDivisionError"),
    (_in_place, "in place"),
])
def test_grad_cam_wrong(wrong, words):
    verdict = nb01.check_grad_cam(wrong)
    assert not verdict and words in verdict.message


def test_grad_cam_per_batch_scaling_is_named():
    def per_batch(A, G, size):
        w = cams.grad_cam(A, G).clamp(min=0)
        w = (w - w.min()) / (w.max() - w.min() + 1e-7)
        return cams.upsample(w, size)

    verdict = nb01.check_grad_cam(per_batch)
    assert not verdict and "each image" in verdict.message


@pytest.fixture(scope="module")
def plain():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = models.plain_cnn().eval()
        x = torch.rand(2, 3, 64, 64)
    return model, x


def _record(model, layer_name, x, target, safe=True):
    store = {}
    module = dict(model.named_modules())[layer_name]

    def hook(m, inputs, output):
        store["A"] = output
        output.register_hook(lambda g: store.__setitem__("G", g))

    handle = module.register_forward_hook(hook)
    if safe:
        try:
            model(x)[:, target].sum().backward()
        finally:
            handle.remove()
    else:
        model(x)[:, target].sum().backward()
        handle.remove()
    model.zero_grad(set_to_none=True)
    return store["A"].detach(), store["G"]


def test_bare_hooks_right(plain):
    model, x = plain
    assert nb01.check_bare_hooks(_record, model, x, target=2)
    assert nb01.hook_count(model) == 0


def test_bare_hooks_unsafe_is_caught_and_cleaned(plain):
    model, x = plain
    verdict = nb01.check_bare_hooks(lambda *a: _record(*a, safe=False), model, x, target=2)
    assert not verdict and "finally" in verdict.message
    assert nb01.hook_count(model) == 0          # the checker removed the leaked hook


def test_bare_hooks_leak_and_wrong_values(plain):
    model, x = plain

    def leaky(model, layer_name, x, target):
        A, G = _record(model, layer_name, x, target)
        dict(model.named_modules())[layer_name].register_forward_hook(lambda *a: None)
        return A, G

    verdict = nb01.check_bare_hooks(leaky, model, x, target=2)
    assert not verdict and "still registered" in verdict.message
    assert nb01.hook_count(model) == 0

    def wrong_class(model, layer_name, x, target):
        return _record(model, layer_name, x, (target + 1) % 6)

    verdict = nb01.check_bare_hooks(wrong_class, model, x, target=2)
    assert not verdict and "G is not" in verdict.message

    first_relu = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU))

    def wrong_layer(model, layer_name, x, target):
        return _record(model, first_relu, x, target)

    verdict = nb01.check_bare_hooks(wrong_layer, model, x, target=2)
    assert not verdict and "shape" in verdict.message


# ----------------------------------------------------------------------------- nb02
def test_block_output_call():
    assert nb02.check_block_output_call("layer4.1.relu#1")
    for wrong, words in (("layer4.1.relu", "ambiguous"), ("layer4.1.relu#0", "branch"),
                         ("layer4.1.bn2", "residual"), ("layer4.1", "reference"),
                         (3, "str")):
        verdict = nb02.check_block_output_call(wrong)
        assert not verdict and words in verdict.message


def test_gradient_paths():
    assert nb02.gradient_paths("layer4.1.conv2") == 1
    assert nb02.gradient_paths("layer4") == 1
    assert nb02.gradient_paths("layer4.0.conv2") == 2
    assert nb02.gradient_paths("layer4.0") == 2
    assert nb02.gradient_paths("layer3.1.relu#0") == 4
    assert nb02.gradient_paths("layer1.0.downsample.0") == 128
    assert nb02.gradient_paths("conv1") == 256
    with pytest.raises(ValueError, match="#0"):
        nb02.gradient_paths("layer2.1.relu")
    with pytest.raises(ValueError, match="not a layer"):
        nb02.gradient_paths("layer5")


def test_path_counts():
    right = {"layer4.1.conv2": 1, "layer4.0.conv2": 2, "layer3.1.conv2": 4, "conv1": 256}
    assert nb02.check_path_counts(right)
    verdict = nb02.check_path_counts({**right, "conv1": 8})
    assert not verdict and "conv1: you said 8" in verdict.message
    verdict = nb02.check_path_counts({**right, "layer4.1.conv2": 2})
    assert not verdict and "0 residual block(s)" in verdict.message
    verdict = nb02.check_path_counts({"conv1": 256})
    assert not verdict and "layer4.1.conv2" in verdict.message
    assert not nb02.check_path_counts([1, 2, 4, 256])


def test_conv1_share():
    assert nb02.check_conv1_share(0.25)
    assert nb02.check_conv1_share(56 * 56 / 112 ** 2)
    for wrong, words in ((0.75, "zero"), (1 / 9, "overlap"), (1.5, "between 0 and 1"),
                         (0.5, "count it"), ("1/4", "number")):
        verdict = nb02.check_conv1_share(wrong)
        assert not verdict and words in verdict.message


class _Board:
    """A stand-in for a Scoreboard: ``compare`` returns a fixed interval."""

    def __init__(self, difference, low, high):
        self.result = {"difference": difference, "low": low, "high": high}

    def compare(self, a, b, metric="energy"):
        return {"a": a, "b": b, "metric": metric, **self.result}


@pytest.mark.parametrize("interval, right", [((0.1, 0.05, 0.15), "higher"),
                                             ((-0.1, -0.15, -0.05), "lower"),
                                             ((0.02, -0.01, 0.05), "no evidence")])
def test_comparison(interval, right):
    board = _Board(*interval)
    a, b = ("layer4", "gradcam"), ("conv1", "gradcam")
    assert nb02.check_comparison(right, board, a, b)
    assert nb02.check_comparison(right.upper() + " ", board, a, b)
    for wrong in {"higher", "lower", "no evidence"} - {right}:
        verdict = nb02.check_comparison(wrong, board, a, b)
        assert not verdict and "interval" in verdict.message
    verdict = nb02.check_comparison("yes", board, a, b)
    assert not verdict and "'no evidence'" in verdict.message


def test_comparison_on_a_real_scoreboard():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = models.resnet18_narrow(width=4).eval()
        x = torch.rand(4, 3, 64, 64)
    masks = [torch.zeros(1, 64, 64, dtype=torch.bool) for _ in range(4)]
    for i, m in enumerate(masks):
        m[0, 8 * i:8 * i + 20, 10:30] = True
    board = scoreboard(model, x, masks, [[i % 6] for i in range(4)], ["layer3", "layer4"],
                       methods=("gradcam",), n_boot=50)
    r = board.compare("layer3", "layer4")
    right = "higher" if r["low"] > 0 else "lower" if r["high"] < 0 else "no evidence"
    assert nb02.check_comparison(right, board, "layer3", "layer4")
