"""The CAM family: identities that must hold, the display conventions, Score-CAM."""

import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode

from gradcam_edu import cams
from gradcam_edu.capture import capture


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))


def test_identity_at_last_stage_gradcam_hirescam_cam(resnet, images):
    """At layer4's output (GAP then one linear layer) the gradient is constant over space:
    W[c, k] / (h w). Grad-CAM, HiResCAM and CAM from the fc weights then agree."""
    classes = [1, 5, 9]
    with capture(resnet, ["layer4"]) as cap:
        cap.forward(images)
        cap.backward(classes)
    A, G = cap.activations["layer4"], cap.gradients["layer4"]
    hw = A.shape[-2] * A.shape[-1]
    cam = cams.class_activation_map(A, resnet.fc.weight.detach(), classes) / hw
    torch.testing.assert_close(cams.grad_cam(A, G), cam, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cams.hires_cam(A, G), cam, atol=1e-5, rtol=1e-5)
    for raw in (cams.grad_cam(A, G), cams.hires_cam(A, G), cam):
        torch.testing.assert_close(cams.finalize(raw, (96, 96)),
                                   cams.finalize(cam, (96, 96)), atol=1e-5, rtol=0)


def test_gradcam_and_hirescam_differ_inside_a_block(resnet, images):
    with capture(resnet, ["layer4.1.conv2"]) as cap:
        cap.forward(images)
        cap.backward(1)
    A, G = cap.activations["layer4.1.conv2"], cap.gradients["layer4.1.conv2"]
    assert (cams.grad_cam(A, G) - cams.hires_cam(A, G)).abs().max() > 1e-4


def test_finalize_all_zero_map_stays_zero_not_nan():
    raw = torch.zeros(2, 7, 7)
    raw[1] = -torch.rand(7, 7)  # negative everywhere: ReLU makes it zero
    out = cams.finalize(raw, (224, 224))
    assert out.shape == (2, 224, 224)
    assert torch.isfinite(out).all() and out.abs().max() == 0


def test_finalize_scales_each_image_to_unit_range_and_upsamples_like_torch():
    raw = torch.randn(3, 7, 7, generator=torch.Generator().manual_seed(0))
    small = cams.finalize(raw)
    assert small.shape == (3, 7, 7)
    assert torch.allclose(small.amax(dim=(1, 2)), torch.ones(3), atol=1e-6)
    assert small.min() >= 0
    big = cams.finalize(raw, (224, 224))
    expected = nn.functional.interpolate(small[:, None], size=(224, 224), mode="bilinear",
                                         align_corners=False)[:, 0]
    torch.testing.assert_close(big, expected)


def test_raw_map_rejects_unknown_method():
    A = torch.rand(1, 4, 3, 3)
    with pytest.raises(ValueError, match=r"method: unknown method 'gradcam\+'.*gradcam\+\+"):
        cams.raw_map("gradcam+", A, A)


def test_eigen_cam_is_class_agnostic_and_sign_corrected():
    A = torch.rand(2, 8, 5, 5, generator=torch.Generator().manual_seed(0))
    raw = cams.eigen_cam(A)
    assert raw.shape == (2, 5, 5)
    assert (raw.amax(dim=(1, 2)) >= raw.amin(dim=(1, 2)).abs()).all()
    torch.testing.assert_close(cams.eigen_cam(A, torch.randn_like(A)), raw)


def test_class_activation_map_checks_channels():
    with pytest.raises(ValueError, match="fc_weight: has 5 inputs but the activations have 4"):
        cams.class_activation_map(torch.rand(1, 4, 2, 2), torch.rand(3, 5), 0)


def test_explain_many_layers_and_methods(resnet, images):
    maps = cams.explain(resnet, images, ["layer4", "layer3.1", "conv1"], target=[0, 1, 2],
                        methods=("gradcam", "layercam", "eigencam"))
    assert list(maps) == ["conv1", "layer3.1", "layer4"]  # forward order
    for per_method in maps.values():
        for m in per_method.values():
            assert m.shape == (3, 96, 96)
            assert m.min() >= 0 and m.max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="methods: unknown method 'gradcan'"):
        cams.explain(resnet, images, ["layer4"], 0, methods=("gradcan",))


class TinyGapNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_score_cam_matches_a_direct_loop():
    torch.manual_seed(0)
    model = TinyGapNet().eval()
    x = torch.rand(2, 3, 16, 16)
    with capture(model, ["features"]) as cap:
        cap.forward(x)
    A = cap.activations["features"]
    raw = cams.score_cam(model, x, A, target=[1, 3], batch_size=4)
    # the definition, one channel at a time
    for i, c in enumerate([1, 3]):
        scores = []
        for k in range(6):
            m = nn.functional.interpolate(A[i:i + 1, k:k + 1], size=(16, 16),
                                          mode="bilinear", align_corners=False)
            m = (m - m.min()) / (m.max() - m.min() + 1e-7)
            with torch.no_grad():
                scores.append(model(x[i:i + 1] * m)[0, c])
        w = torch.stack(scores).softmax(0)
        torch.testing.assert_close(raw[i], (w[:, None, None] * A[i]).sum(0), atol=1e-5,
                                   rtol=1e-5)
    top = cams.score_cam(model, x, A, target=1, max_channels=3)
    assert top.shape == (2, 16, 16)
    with pytest.raises(ValueError, match="batch_size"):
        cams.score_cam(model, x, A, target=1, batch_size=0)


def test_a_new_method_is_one_function_and_one_registry_line(monkeypatch, resnet, images):
    """Adding a method: one function of (A, G) and one line in cams.METHODS. It then shows
    up everywhere the registry is read (views, checks, explain)."""
    def abs_grad_cam(A, G):                              # the one function
        return cams.grad_cam(A, G.abs())

    monkeypatch.setitem(cams.METHODS, "absgradcam",
                        cams.Method("|G|-Grad-CAM", abs_grad_cam))   # the one line
    assert "absgradcam" in cams.GRADIENT_METHODS and cams.METHOD_TITLES["absgradcam"]
    maps = cams.explain(resnet, images, ["layer3"], 2, methods=["gradcam", "absgradcam"])
    with capture(resnet, ["layer3"]) as cap:
        cap.forward(images)
        cap.backward(2)
    A, G = cap.activations["layer3"], cap.gradients["layer3"]
    expected = cams.finalize(cams.grad_cam(A, G.abs()), (96, 96))
    torch.testing.assert_close(maps["layer3"]["absgradcam"], expected)
    assert cams.check_method("absgradcam").title == "|G|-Grad-CAM"


def test_every_method_through_one_call(resnet, images):
    """raw_map serves every registered method with one call shape: CAM equals
    sum_k W[c, k] A_k, Score-CAM equals score_cam, the (A, G) methods their functions."""
    with capture(resnet, ["layer4"]) as cap:
        cap.forward(images)
        cap.backward([1, 2, 3])
    A, G = cap.activations["layer4"], cap.gradients["layer4"]
    for name in cams.METHODS:
        raw = cams.raw_map(name, A, G, model=resnet, x=images, target=[1, 2, 3])
        assert raw.shape == (3, 3, 3)
    cam = cams.raw_map("cam", A, None, model=resnet, target=[1, 2, 3])
    by_hand = torch.stack([torch.einsum("k,khw->hw", resnet.fc.weight[c].detach(), A[i])
                           for i, c in enumerate([1, 2, 3])])
    torch.testing.assert_close(cam, by_hand)
    with pytest.raises(ValueError, match="model: Score-CAM needs the model"):
        cams.raw_map("scorecam", A, G)
    with pytest.raises(ValueError, match="G: Grad-CAM needs the gradients"):
        cams.raw_map("gradcam", A)
    with pytest.raises(ValueError, match=r"methods: 'cam' \(CAM, needs head\) is not available "
                                         r"here; choose one of gradcam, hirescam"):
        cams.check_methods(["gradcam", "cam"], cams.GRADIENT_METHODS)
    with pytest.raises(ValueError, match=r"unknown method 'gradcam\+'; did you mean gradcam\+\+"):
        cams.check_method("gradcam+")


def test_cam_refuses_a_layer_that_does_not_feed_the_head(resnet, images):
    """layer4.1.conv2 has fc's 512 channels, but its pooled output does not give the logits:
    CAM there would be a different map under CAM's name."""
    with capture(resnet, ["layer4.1.conv2", "layer4"]) as cap:
        logits = cap.forward(images)
    cams.raw_map("cam", cap.activations["layer4"], model=resnet, target=1, logits=logits)
    with pytest.raises(ValueError, match="layer: CAM needs the layer whose global average"):
        cams.raw_map("cam", cap.activations["layer4.1.conv2"], model=resnet, target=1,
                     logits=logits)


def test_score_cam_inside_a_capture_records_nothing_more(resnet, images):
    """Score-CAM's masked forwards run while the hooks are on: they pass through, so the
    capture keeps exactly one forward's tensors."""
    with capture(resnet, ["layer4"]) as cap:
        cap.forward(images[:1])
        cams.score_cam(resnet, images[:1], cap.activations["layer4"].detach(), 0,
                       max_channels=8, batch_size=4)
        assert cap._calls == {} and list(cap.activations) == ["layer4"]
        assert cap.activations["layer4"].shape[0] == 1


def test_score_cam_shares_one_forward_for_all_zero_channels_and_mixes_images():
    """Image 0 has 3 all-zero channels of 6, image 1 has 1: their masks are 0, so each image
    needs its 3 (resp. 5) live masks and one x * 0: 4 + 6 = 10 masked images, in batches of
    4 that mix the two images: 3 forwards of 4, 4 and 2, channels-last on the CPU. The map
    still equals the one-channel-at-a-time definition."""
    torch.manual_seed(0)
    model = TinyGapNet().eval()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    A = torch.rand(2, 6, 4, 4, generator=torch.Generator().manual_seed(3))
    A[0, [1, 2, 4]] = 0
    A[1, 5] = 0
    batches = []
    handle = model.register_forward_pre_hook(lambda m, i: batches.append(i[0]))
    try:
        raw = cams.score_cam(model, x, A, target=[1, 3], batch_size=4)
    finally:
        handle.remove()
    assert [len(b) for b in batches] == [4, 4, 2]
    assert all(b.is_contiguous(memory_format=torch.channels_last) for b in batches)
    for i, c in enumerate([1, 3]):
        scores = []
        for k in range(6):
            m = nn.functional.interpolate(A[i:i + 1, k:k + 1], size=(8, 8), mode="bilinear",
                                          align_corners=False)
            m = (m - m.min()) / (m.max() - m.min() + 1e-7)
            with torch.no_grad():
                scores.append(model(x[i:i + 1] * m)[0, c])
        w = torch.stack(scores).softmax(0)
        torch.testing.assert_close(raw[i], (w[:, None, None] * A[i]).sum(0), atol=1e-6,
                                   rtol=1e-5)
    assert not raw.is_inference() and not raw.requires_grad
    raw.add_(1.0)                                    # a normal tensor: in-place works


def test_score_cam_refuses_activations_on_another_device():
    model = TinyGapNet().eval()
    with pytest.raises(ValueError, match="A: on meta, but x is on cpu"):
        cams.score_cam(model, torch.rand(1, 3, 8, 8), torch.rand(1, 6, 4, 4, device="meta"), 0)
    with pytest.raises(ValueError, match="batch_size: expected a positive int, got True"):
        cams.score_cam(model, torch.rand(1, 3, 8, 8), torch.rand(1, 6, 4, 4), 0, batch_size=True)


FACTORIES = {"zeros", "ones", "empty", "full", "arange", "tensor", "as_tensor", "rand", "randn",
             "randint", "eye", "linspace", "empty_strided"}


class FactoryCalls(TorchFunctionMode):
    """Records where the package's capture and cams create a tensor without ``device=``: on a
    GPU model such a tensor would silently land on the CPU."""

    def __init__(self):
        super().__init__()
        self.without_device = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in FACTORIES and kwargs.get("device") is None:
            frame = sys._getframe(1)
            while frame and "gradcam_edu" not in frame.f_code.co_filename:
                frame = frame.f_back
            where = Path(frame.f_code.co_filename).name if frame else ""
            if where in ("capture.py", "cams.py"):
                self.without_device.append(f"{where}:{frame.f_lineno} torch.{func.__name__}")
        return func(*args, **kwargs)


def test_capture_and_cams_create_tensors_on_the_inputs_device(resnet, images):
    """Every tensor capture and cams create takes its device from the model's tensors (checked
    on the CPU by recording the factory calls), and finalize keeps the maps' device (meta)."""
    with FactoryCalls() as calls:
        with capture(resnet, ["layer4", "layer3.0.bn1"]) as cap:
            cap.forward(images[:2])
            cap.backward([1, 2], input_gradient=True)
            A = cap.activations["layer4"].detach()
        cams.score_cam(resnet, images[:2], A, [1, 2], max_channels=5, batch_size=4)
        cams.raw_map("cam", A, model=resnet, target=1, logits=cap.logits)
        cams.explain(resnet, images[:1], ["layer4"], 0, methods=("gradcam", "eigencam"))
    assert calls.without_device == []
    raw = torch.empty(2, 3, 3, device="meta")
    assert cams.finalize(raw, (12, 12)).device.type == "meta"
    assert cams.finalize(raw, (12, 12)).shape == (2, 12, 12)
