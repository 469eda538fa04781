"""The one-pass capture: what it records, what it leaves behind, how it fails."""

import pytest
import torch
import torchvision
from torch import nn

from gradcam_edu.capture import (
    _WRITTEN_IN_PLACE,
    capturable_layers,
    capture,
    hook_count,
    input_gradient,
    record,
)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_many_layers_one_forward_one_backward(resnet, images):
    layers = ["layer4.1.conv2", "layer4.1", "conv1", "layer3.0.downsample"]
    calls = {"forward": 0}
    handle = resnet.register_forward_hook(lambda *a: calls.__setitem__("forward",
                                                                        calls["forward"] + 1))
    try:
        with capture(resnet, layers) as cap:
            cap.forward(images)
            cap.backward([1, 2, 3])
            for name in layers:
                assert cap.activations[name].shape == cap.gradients[name].shape
            assert cap.activations["layer4.1"].shape == (3, 512, 2, 2)
            assert cap.layer_names == ["conv1", "layer3.0.downsample", "layer4.1.conv2",
                                       "layer4.1"]
            cap.backward(5)  # another class: one more backward, no forward
            cap.backward([0, 0, 9])
    finally:
        handle.remove()
    assert calls["forward"] == 1


def test_gradients_match_plain_autograd(resnet, images):
    """The captured gradient is d score / d activation, checked by a forward from the layer."""
    with capture(resnet, ["layer4.1"]) as cap:
        cap.forward(images)
        cap.backward([1, 2, 3])
        A, G = cap.activations["layer4.1"].detach(), cap.gradients["layer4.1"]
    A = A.clone().requires_grad_(True)
    logits = resnet.fc(torch.flatten(resnet.avgpool(A), 1))
    score = logits[torch.arange(3), torch.tensor([1, 2, 3])].sum()
    (expected,) = torch.autograd.grad(score, A)
    torch.testing.assert_close(G, expected, rtol=1e-5, atol=1e-7)


def test_per_image_targets_are_independent(resnet, images):
    with capture(resnet, ["layer3"]) as cap:
        cap.forward(images)
        cap.backward([4, 7, 2])
        batch = cap.gradients["layer3"]
    with capture(resnet, ["layer3"]) as cap:
        cap.forward(images[1:2])
        cap.backward(7)
        single = cap.gradients["layer3"]
    torch.testing.assert_close(batch[1:2], single, rtol=1e-4, atol=1e-6)


def test_several_classes_reuse_one_forward(resnet, images):
    with capture(resnet, ["layer4"]) as cap:
        cap.forward(images)
        g = {c: cap.backward(c) is not None and cap.gradients["layer4"] for c in (0, 1)}
    with capture(resnet, ["layer4"]) as cap:
        cap.forward(images)
        cap.backward(1)
        torch.testing.assert_close(g[1], cap.gradients["layer4"])
    assert not torch.allclose(g[0], g[1])


def test_callable_target(resnet, images):
    with capture(resnet, ["layer4"]) as cap:
        logits = cap.forward(images)
        scores = cap.backward(lambda out: out[:, 3] - out[:, 4])
    torch.testing.assert_close(scores, (logits[:, 3] - logits[:, 4]).detach())


def test_inplace_relu_does_not_corrupt_bn1(resnet, images):
    """bn1's output is overwritten by the block's in-place ReLU; the capture keeps the
    pre-ReLU values, negatives included, and its gradient is for those same values."""
    with capture(resnet, ["layer4.1.bn1", "layer4.1.relu#0"]) as cap:
        cap.forward(images)
        cap.backward(1)
        pre, post = cap.activations["layer4.1.bn1"], cap.activations["layer4.1.relu#0"]
        assert (pre < 0).any()
        torch.testing.assert_close(post, pre.clamp(min=0))
        g_pre, g_post = cap.gradients["layer4.1.bn1"], cap.gradients["layer4.1.relu#0"]
        # d/d(pre) = d/d(post) where pre > 0, zero where the ReLU cut it
        torch.testing.assert_close(g_pre, torch.where(pre > 0, g_post, torch.zeros_like(g_post)))


def test_block_output_not_corrupted_by_residual_add(resnet, images):
    """`out += identity` is in place on bn2's output: bn2 must still hold bn2's output."""
    block = resnet.layer2[1]
    with capture(resnet, ["layer2.1.bn2", "layer2.0"]) as cap:
        cap.forward(images)
        bn2, block_in = cap.activations["layer2.1.bn2"], cap.activations["layer2.0"]
    with torch.no_grad():
        branch = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(block_in)))))
    torch.testing.assert_close(bn2, branch)


def test_model_not_changed_by_capture(resnet, images):
    """The output with hooks equals the output without; the capture's clones change nothing."""
    with torch.no_grad():
        expected = resnet(images)
    with capture(resnet, ["layer1.0.bn1", "layer1.0.relu#0", "layer1.0", "layer4.1.bn2"]) as cap:
        got = cap.forward(images)
    torch.testing.assert_close(got.detach(), expected)


def test_reused_module_needs_a_call_index(resnet, images):
    with capture(resnet, ["layer4.1.relu"]) as cap:
        with pytest.raises(ValueError, match=r"ran 2 times.*'layer4.1.relu#0', 'layer4.1.relu#1'"):
            cap.forward(images)
    with capture(resnet, ["layer4.1.relu#2"]) as cap:
        with pytest.raises(ValueError, match="ran 2 time"):
            cap.forward(images)
    assert hook_count(resnet) == 0


def test_module_objects_accepted(resnet, images):
    with capture(resnet, [resnet.layer4[1].conv2, resnet.conv1]) as cap:
        cap.forward(images)
        assert set(cap.activations) == {"layer4.1.conv2", "conv1"}


def test_no_parameter_grad_and_flags_restored(resnet, images):
    resnet.train()
    resnet.layer1.requires_grad_(False)
    before = {n: p.requires_grad for n, p in resnet.named_parameters()}
    try:
        with capture(resnet, ["layer1.0.conv1", "layer4"]) as cap:
            assert not resnet.training  # eval while capturing
            cap.forward(images)
            cap.backward(2)
            # frozen layers still get gradients for their activations (input requires grad)
            assert cap.gradients["layer1.0.conv1"].abs().sum() > 0
        assert resnet.training and all(m.training for m in resnet.modules())
        assert {n: p.requires_grad for n, p in resnet.named_parameters()} == before
        assert all(p.grad is None for p in resnet.parameters())
    finally:
        resnet.requires_grad_(True)
        resnet.eval()


def test_eval_false_keeps_mode(resnet, images):
    resnet.train()
    try:
        with capture(resnet, ["layer4"], eval=False):
            assert resnet.training
    finally:
        resnet.eval()


class Exploding(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


def test_hooks_removed_when_forward_or_backward_raises(resnet, images):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), Exploding())
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, ["0"]) as cap:
            cap.forward(images)
    assert hook_count(model) == 0

    with pytest.raises(IndexError):
        with capture(resnet, ["layer4", "conv1"]) as cap:
            cap.forward(images)
            cap.backward(10)
    assert hook_count(resnet) == 0
    assert all(p.grad is None for p in resnet.parameters())


def test_graph_released_after_exit(resnet, images):
    with capture(resnet, ["layer4"]) as cap:
        cap.forward(images)
        cap.backward(1)
    assert cap.activations["layer4"].grad_fn is None
    assert cap.logits.grad_fn is None
    with pytest.raises(RuntimeError, match="inside the with-block"):
        cap.backward(1)


def test_unknown_layer_lists_close_matches(resnet):
    with pytest.raises(ValueError, match=r"no layer named 'layer4\.1\.conv3'.*layer4\.1\.conv"):
        capture(resnet, ["layer4.1.conv3"])
    with pytest.raises(ValueError, match="layer4.0"):
        capture(resnet, ["layer4.O"])


class WithUnusedLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.unused = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


def test_layer_that_never_ran(images):
    model = WithUnusedLayer()
    with capture(model, ["unused"]) as cap:
        with pytest.raises(RuntimeError, match="'unused' never ran"):
            cap.forward(images)


@pytest.mark.parametrize("bad, error, message", [
    (torch.rand(3, 64, 64), ValueError, r"x: expected a 4-D batch.*unsqueeze\(0\)"),
    (torch.rand(1, 1, 64, 64), ValueError, "x: the model's first convolution expects 3"),
    (torch.full((1, 3, 64, 64), float("nan")), ValueError, "x: the input contains NaN"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, "x: expected a floating-point"),
])
def test_bad_images(resnet, bad, error, message):
    with capture(resnet, ["layer4"]) as cap:
        with pytest.raises(error, match=message):
            cap.forward(bad)
    assert hook_count(resnet) == 0


def test_bad_arguments(resnet, images):
    with pytest.raises(ValueError, match="layers: the list of layers is empty"):
        capture(resnet, [])
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        capture(lambda x: x, ["layer4"])
    with capture(resnet, ["layer4"]) as cap:
        cap.forward(images)
        with pytest.raises(IndexError, match=r"target: class index 10 is out of range.*10 "
                                             r"classes \(0 to 9\)"):
            cap.backward(10)
        with pytest.raises(IndexError, match="class index -1"):
            cap.backward(-1)
        with pytest.raises(ValueError, match="target: got 2 classes for a batch of 3"):
            cap.backward([1, 2])
        with pytest.raises(TypeError, match="target"):
            cap.backward("cat")


def test_capturable_layers_name_reused_calls():
    """The shared ReLU of a BasicBlock runs twice: named relu#0 / relu#1; layers that run
    once keep their plain name; non-4-D outputs (fc) are left out."""
    model = torchvision.models.resnet18(num_classes=3).eval()
    names = capturable_layers(model, torch.rand(1, 3, 32, 32))
    block = [n for n in names if n.startswith("layer1.0.")]
    assert block == ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu#0", "layer1.0.conv2",
                     "layer1.0.bn2", "layer1.0.relu#1"]
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"] and "fc" not in names
    assert hook_count(model) == 0


def test_capturable_layers_in_forward_order(resnet, images):
    names = capturable_layers(resnet, images)
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert "layer4.1.relu#0" in names and "layer4.1.relu#1" in names
    assert names.index("layer4.1.conv2") < names.index("layer4.1") < names.index("layer4")
    convs = capturable_layers(resnet, images, kinds=(nn.Conv2d,))
    assert len(convs) == 20  # 17 convs + 3 downsample convs
    assert hook_count(resnet) == 0


def test_works_inside_no_grad(resnet, images):
    """A learner's cell may run under torch.no_grad(); the capture still differentiates."""
    with torch.no_grad(), capture(resnet, ["layer4"]) as cap:
        cap.forward(images)
        cap.backward(1, input_gradient=True)
        assert cap.gradients["layer4"].abs().sum() > 0
        assert cap.input_gradient.shape == images.shape


def test_record_keeps_the_graph_not_the_hooks(resnet, images):
    """record(): one forward, every hook gone and the mode restored at once; each later
    class costs one backward and gives the same gradients as a fresh capture."""
    resnet.train()
    try:
        rec = record(resnet, ["layer4.1", "layer2.0.conv1"], images)
        assert hook_count(resnet) == 0 and resnet.training
        assert rec.logits.grad_fn is not None          # the graph is kept
        for cls in (3, [1, 2, 0]):
            rec.backward(cls)
            with capture(resnet, ["layer4.1", "layer2.0.conv1"]) as cap:
                cap.forward(images)
                cap.backward(cls)
            for name in ("layer4.1", "layer2.0.conv1"):
                torch.testing.assert_close(rec.gradients[name], cap.gradients[name])
                assert rec.gradients[name].grad_fn is None
        rec.release()
        with pytest.raises(RuntimeError, match="call cap.forward"):
            rec.backward(0)
    finally:
        resnet.eval()
    assert all(p.grad is None for p in resnet.parameters())


def test_input_gradient_is_the_pixel_gradient_of_the_score():
    """A linear model: score = w . x, so d score / d x = w for every image, by hand."""
    w = torch.arange(12, dtype=torch.float32).reshape(1, 3, 2, 2)
    model = nn.Sequential(nn.Conv2d(3, 1, 2, bias=False), nn.Flatten())
    with torch.no_grad():
        model[0].weight.copy_(w)
    x = torch.rand(2, 3, 2, 2)
    g = input_gradient(model, x, 0)
    torch.testing.assert_close(g, w.expand(2, 3, 2, 2))
    assert hook_count(model) == 0 and model[0].weight.grad is None


def test_pullback_is_the_vector_jacobian_product_between_captured_tensors():
    """y = 3 x (a conv with weight 3): J^T v = 3 v, and nothing flows between unrelated
    tensors."""
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.Conv2d(1, 1, 1, bias=False),
                          nn.Flatten(), nn.LazyLinear(2))
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[1].weight.fill_(3.0)
    x = torch.rand(1, 1, 4, 4)
    model(x)
    with capture(model, ["0", "1"]) as cap:
        cap.forward(x)
        v = torch.rand(1, 1, 4, 4)
        torch.testing.assert_close(cap.pullback("1", "0", v), 3.0 * v)
        with pytest.raises(ValueError, match="input: 'nope' is not a captured layer"):
            cap.pullback("1", "nope", v)
    with pytest.raises(RuntimeError, match="graph is gone"):
        cap.pullback("1", "0", v)


def test_clones_only_the_outputs_written_in_place_downstream():
    """torchvision's BasicBlock: bn1's output is overwritten by the in-place ReLU, bn2's by
    `out += identity`, conv1's by nothing. The first capture learns exactly that; the next
    one hands conv1's output on as is (bn1 reads the very memory recorded) and bn1's as a
    clone, and still records bn1's pre-ReLU values."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    layers = ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.bn2"]
    with capture(model, layers) as cap:
        cap.forward(x)
    assert _WRITTEN_IN_PLACE[model] == {"layer1.0.conv1#0": False, "layer1.0.bn1#0": True,
                                        "layer1.0.bn2#0": True}
    seen = {}
    block = model.layer1[0]
    handles = [block.bn1.register_forward_pre_hook(lambda m, i: seen.setdefault("bn1", i[0])),
               block.relu.register_forward_pre_hook(lambda m, i: seen.setdefault("relu", i[0]))]
    try:
        with capture(model, layers) as cap:
            cap.forward(x)
    finally:
        for h in handles:
            h.remove()
    def same(a, b):
        return a.data_ptr() == b.data_ptr()
    assert same(seen["bn1"], cap.activations["layer1.0.conv1"])        # no copy
    assert not same(seen["relu"], cap.activations["layer1.0.bn1"])     # a clone
    assert (cap.activations["layer1.0.bn1"] < 0).any()               # pre-ReLU values kept


class SometimesInPlace(nn.Module):
    """score = sum(3 * conv(x)), with the product in place on the conv's output when asked."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(2.0)
        self.in_place = False

    def forward(self, x):
        y = self.conv(x)
        y = y.mul_(3.0) if self.in_place else y * 3.0
        return y.flatten(1).sum(dim=1, keepdim=True)


def test_an_output_newly_written_in_place_is_caught_and_recorded_right():
    """Learned 'not written' on a first capture, then the model starts writing in place: the
    version check sees it, the forward runs once more with a clone, and the activation is
    conv(x) = 2 (not 6), its gradient d(sum 3 y)/dy = 3. Later captures clone at once."""
    model, x = SometimesInPlace(), torch.ones(1, 1, 2, 2)
    forwards = []
    handle = model.register_forward_pre_hook(lambda *a: forwards.append(1))
    try:
        for in_place, expected_forwards in ((False, 1), (False, 1), (True, 2), (True, 1)):
            model.in_place = in_place
            forwards.clear()
            with capture(model, ["conv"]) as cap:
                cap.forward(x)
                cap.backward(0)
            assert len(forwards) == expected_forwards
            torch.testing.assert_close(cap.activations["conv"], torch.full((1, 1, 2, 2), 2.0))
            torch.testing.assert_close(cap.gradients["conv"], torch.full((1, 1, 2, 2), 3.0))
    finally:
        handle.remove()
    assert hook_count(model) == 0
