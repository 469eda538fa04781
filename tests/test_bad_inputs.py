"""Bad input is refused clearly, nothing is lost, nothing runs (issue 9, part 3): one test per
class of failure the fuzzing found. Every refusal names the argument and what was expected,
leaves no hook behind and restores the model's mode; a legitimate but surprising result
warns instead."""

import datetime
import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from pngs import header_png
from torch import nn

from gradcam_edu import attributions, cams, faithfulness, images
from gradcam_edu.capture import capture, check_images, hook_count
from gradcam_edu.explorer import Explorer
from gradcam_edu.models import resnet18_narrow
from gradcam_edu.targets import class_indices, select_target, target_scores

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))




def png_of(pil: Image.Image) -> bytes:
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def in_train_mode_after(model: nn.Module, fn) -> None:
    """Run ``fn`` with ``model`` in train mode; every flag and no hook are left after."""
    model.train()
    try:
        fn()
        assert all(m.training for m in model.modules())
    finally:
        model.eval()
    assert hook_count(model) == 0


# ----------------------------------------------------------------------------- tiny files
@pytest.fixture
def never_decoded(monkeypatch):
    """Fails the test if PIL decodes any pixel data (the bounds come from the header)."""
    def refuse(self):
        raise AssertionError(f"decoded a {self.size} image")
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize("width, height, expected", [
    (8000, 1, "a strip"),                          # 104 bytes; 1.6 GB once resized to 224
    (1, 300, "a strip"),
    (10000, 10000, "100,000,000 pixels"),          # PIL's DecompressionBombWarning
    (20000, 20000, "400,000,000 pixels"),          # PIL's DecompressionBombError
    (7100, 7100, "50,410,000 pixels"),             # over our bound, under PIL's
])
def test_tiny_files_describing_huge_images_are_refused_before_decoding(
        tmp_path, never_decoded, width, height, expected):
    data = header_png(width, height)
    assert len(data) < 20_000
    path = tmp_path / "tiny.png"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # PIL's bomb warning is no way out either
        for call in (lambda: images.decode_image(data, 224, name="'tiny.png'"),
                     lambda: images.load_image_file(path, 224),
                     lambda: images.open_image_file(path, 256)):
            with pytest.raises(images.ImageTooLargeError, match=expected) as err:
                call()
            message = str(err.value)
            assert "tiny.png" in message and "limit" in message and "\n" not in message


def test_the_resize_plan_is_bounded_for_images_and_tensors():
    wide = Image.new("RGB", (60, 20))                                   # aspect 3: fine
    assert images.fit_image(wide, 64).shape == (3, 64, 64)
    with pytest.raises(images.ImageTooLargeError, match=r"resizing its short side to 3000 "
                                                        r"gives 27,000,000 pixels.*limit"):
        images.fit_image(wide, 3000)
    with pytest.raises(images.ImageTooLargeError, match="a strip"):
        images.fit_tensor(torch.rand(3, 1, 8000), 224)
    with pytest.raises(images.ImageTooLargeError, match="a strip"):
        images.imagenet_crop(Image.new("RGB", (8000, 2)))
    with pytest.raises(images.ImageTooLargeError, match="a strip"):
        images.as_image_tensor(np.zeros((2, 8000, 3), dtype=np.uint8), 32)


# ----------------------------------------------------------------------------- targets
@pytest.mark.parametrize("bad, message", [
    (torch.tensor([True, False]), "got booleans"),
    (np.array([True, False]), "got booleans"),
    (np.array([1.0, 2.0]), "expected integer class indices, got a float64 ndarray"),
    (np.float64(2.0), "expected integer class indices, got a float"),
    (np.float32(1.0), "expected integer class indices, got a float"),
    (2.7, "expected integer class indices, got a float"),
    ([1.0, 2.0], "expected integer class indices"),
    ([True, False], "got booleans"),
    (torch.tensor(1.0), "expected integer class indices"),
    (np.bool_(True), "got a bool"),
])
def test_targets_are_never_truncated(bad, message):
    with pytest.raises(TypeError, match=message) as err:
        target_scores(torch.randn(2, 4), bad)
    assert str(err.value).startswith("target: expected ")


@pytest.mark.parametrize("fn, shape", [
    (lambda z: z, r"\(2, 4\)"),                                       # (N, C)
    (lambda z: torch.cat([z[:, 0], z[:1, 0]]), r"\(3,\)"),            # (N + 1,)
    (lambda z: z[:, 0].sum(), r"\(\)"),                               # 0-d with N = 2
    (lambda z: z[:, :1], r"\(2, 1\)"),
])
def test_a_callable_target_returns_exactly_one_score_per_image(fn, shape):
    with pytest.raises(ValueError, match=r"target: the callable must return one score per "
                                         r"image, shape \(2,\), got shape " + shape):
        target_scores(torch.randn(2, 4), fn)
    one = torch.randn(1, 4)
    assert target_scores(one, lambda z: z[0, 1]).tolist() == [float(one[0, 1])]   # N == 1


def test_numpy_integer_scalars_are_one_class_for_all_images(model, x):
    logits = torch.randn(3, 4)
    for one in (np.int64(3), np.int32(3), np.uint8(3), np.array(3), torch.tensor(3)):
        assert torch.equal(target_scores(logits, one), logits[:, 3])
        assert class_indices(one, 3).tolist() == [3, 3, 3]
        assert select_target(one, 3, index=[2, 0], repeats=2) == 3
    with capture(model, ["layer4"]) as cap:
        cap.forward(x)
        cap.backward(np.int64(2))
        by_int = cap.gradients["layer4"].clone()
        cap.backward(2)
        assert torch.equal(cap.gradients["layer4"], by_int)
        with pytest.raises(TypeError, match="booleans"):
            cap.backward(torch.tensor([True, False]))
    assert hook_count(model) == 0


# ----------------------------------------------------------------------------- CAM shapes
@pytest.mark.parametrize("name", list(cams.GRADIENT_METHODS))
def test_every_AG_method_checks_the_shapes_of_A_and_G(name):
    fn = cams.GRADIENT_METHODS[name]
    A = torch.rand(2, 3, 4, 4)
    assert fn(A, torch.rand(2, 3, 4, 4)).shape == (2, 4, 4)
    for G in (torch.rand(2, 3, 2, 2), torch.rand(1, 3, 4, 4), torch.rand(2, 1, 4, 4)):
        # another grid, another batch, other channels: never broadcast
        with pytest.raises(ValueError, match=r"G: shape .* differs from A's \(2, 3, 4, 4\)"):
            fn(A, G)
        with pytest.raises(ValueError, match="G: shape"):
            cams.raw_map(name, A, G)
    for bad in (torch.rand(3, 4, 4), torch.rand(1, 2, 3, 4, 4), torch.rand(2, 3)):
        with pytest.raises(ValueError, match=r"A: expected a layer's activations of shape "
                                             r"\(N, C, h, w\)"):
            fn(bad, bad)


def test_cam_and_score_cam_check_A(model, x):
    with pytest.raises(ValueError, match="A: expected"):
        cams.class_activation_map(torch.rand(64, 1, 1), model.fc.weight, 1)
    with pytest.raises(ValueError, match="A: expected"):
        cams.score_cam(model, x, torch.rand(2, 64), 1)


def test_finalize_refuses_a_single_map_without_changing_its_numbers():
    raw = torch.randn(7, 7, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"raw: expected maps of shape \(N, h, w\), got "
                                         r"\(7, 7\) \(one map: add the batch axis"):
        cams.finalize(raw, (14, 14))
    with pytest.raises(ValueError, match="raw: expected maps"):
        cams.finalize(raw[None, None], (14, 14))
    with pytest.raises(ValueError, match=r"size: expected \(H, W\)"):
        cams.finalize(raw[None], (14, 0))
    one = cams.finalize(raw[None], (14, 14))
    by_hand = cams.upsample(cams.normalize(raw[None].clamp(min=0)), (14, 14))
    assert torch.equal(one, by_hand)
    assert torch.equal(cams.finalize(raw[None], 14), one)                 # an int: square


# ----------------------------------------------------------------------------- inputs
def test_non_finite_input_is_refused(model, x):
    for value, kind in ((float("inf"), "infinite"), (-float("inf"), "infinite"),
                        (float("nan"), "NaN")):
        bad = x.clone()
        bad[0, 0, 0, 0] = value
        with pytest.raises(ValueError, match=f"x: the input contains {kind} values"):
            check_images(model, bad)

        def run(bad=bad):
            with capture(model, ["layer4"]) as cap, pytest.raises(ValueError, match="x: "):
                cap.forward(bad)
        in_train_mode_after(model, run)


def test_overflowing_input_warns_naming_the_layer(model, x):
    def run():
        with capture(model, ["conv1", "layer2", "layer4"]) as cap:
            with pytest.warns(UserWarning, match="logits: non-finite values") as said:
                cap.forward(x * 1e38)                        # finite, but it overflows
            first = next(n for n in cap.layer_names
                         if not torch.isfinite(cap.activations[n]).all())
            assert f"at {first!r};" in str(said[0].message)
        with capture(model, ["layer2", "layer4"]) as cap:
            cap.forward(x)
            with pytest.warns(UserWarning, match="gradients: non-finite values .* at "
                                                 "'layer2', 'layer4'"):
                cap.backward(lambda z: (z[:, 0].abs() + 1e3).exp())   # overflows to inf
    in_train_mode_after(model, run)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_another_float_dtype_says_what_the_model_expects(model, x, dtype):
    def run():
        with capture(model, ["layer4"]) as cap:
            with pytest.raises(TypeError, match=rf"x: the model's parameters are torch.float32 "
                                                rf"but the input is {dtype}"):
                cap.forward(x.to(dtype))
    in_train_mode_after(model, run)
    with pytest.raises(TypeError, match="parameters are torch.float32"):
        cams.explain(model, x.to(dtype), ["layer4"], 1)


class LateStem(nn.Module):
    """A valid model whose stem is registered after another convolution."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Conv2d(8, 4, 1)        # registered first, runs second
        self.stem = nn.Conv2d(3, 8, 3)       # registered second, runs first
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.mix(torch.relu(self.stem(x))).mean(dim=(2, 3)))


def test_the_channel_check_follows_the_model_not_the_registration_order(x):
    torch.manual_seed(0)
    late = LateStem().eval()
    check_images(late, x)                                    # 3 channels: the stem's
    maps = cams.explain(late, x, ["stem", "mix"], 1, methods=["gradcam"])
    assert maps["mix"]["gradcam"].shape == (2, 32, 32)
    with pytest.raises(ValueError, match="x: the model's first convolution expects 8 "
                                         "channels, got 1"):
        check_images(late, x[:, :1])
    with capture(late, ["mix"]) as cap:                      # 8 channels: the model says no
        with pytest.raises(ValueError, match="x: a convolution of the model expects 3 "
                                             "channels, got 8"):
            cap.forward(torch.rand(1, 8, 16, 16))
    assert hook_count(late) == 0


class SideBranch(nn.Module):
    """``side`` runs in the forward but its output never reaches the logits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.side = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.conv(x)
        self.last_side = self.side(h)        # computed, never used by the score
        return self.fc(h.mean(dim=(2, 3)))


def test_a_layer_that_does_not_reach_the_score_warns(x):
    side = SideBranch().eval()
    with capture(side, ["conv", "side"]) as cap:
        cap.forward(x)
        with pytest.warns(UserWarning, match="layers: 'side' got no gradient at all") as rec:
            cap.backward(0)
        assert not any("'conv'" in str(w.message) for w in rec)
        assert float(cap.gradients["side"].abs().sum()) == 0.0
        assert float(cap.gradients["conv"].abs().sum()) > 0.0
        with pytest.raises(ValueError, match="target: the scores do not depend on the logits"):
            cap.backward(lambda z: z[:, 0].detach())
    assert hook_count(side) == 0


# ----------------------------------------------------------------------------- explorer
def upload_entry(name: str, content: bytes) -> dict:
    return {"name": name, "type": "image/png", "size": len(content),
            "content": memoryview(content),
            "last_modified": datetime.datetime.now(datetime.UTC)}


def snapshot(ex: Explorer) -> tuple:
    return (ex.state, ex.image_slider.value, ex.image_slider.max, len(ex.images),
            dict(ex.counts), list(ex.session._grads), ex.session.index,
            ex.input_caption.value, ex.overlay_caption.value, bytes(ex.overlay_image.value),
            bytes(ex.input_image.value), ex.current_map.clone())


def same(a: tuple, b: tuple) -> bool:
    return a[:-1] == b[:-1] and torch.equal(a[-1], b[-1])


def test_a_failed_image_leaves_the_explorer_on_the_previous_one(model):
    pics = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    pics[1] = pics[1].clone()
    pics[1][0, 0, 0] = float("nan")                          # refused by the input check
    ex = Explorer(model, pics, image_size=32, display_size=32)
    ex.class_dropdown.value = 2
    before = snapshot(ex)
    ex.image_slider.value = 1                                # as from the widget: no raise
    assert same(snapshot(ex), before)
    assert "image 1 cannot be shown" in ex.message.value and "NaN" in ex.message.value
    with pytest.raises(ValueError, match="image 1 cannot be shown: x: the input contains NaN"):
        ex.set(image=1)
    assert same(snapshot(ex), before)
    ex.class_dropdown.value = 4                   # the cache keeps following image 0
    assert all(image == 0 for image, _ in ex.session._grads)
    ex.set(image=2)                                          # a good image still loads
    assert ex.state["image"] == 2 and ex.session.index == 2
    assert hook_count(model) == 0


def test_uploads_too_large_or_refused_are_not_added(model):
    def refuse_white(x):                          # a model input check refuses white images
        return x * float("inf") if float(x.min()) > 0.99 else x
    ex = Explorer(model, torch.rand(2, 3, 32, 32), image_size=32, display_size=32,
                  preprocess=refuse_white)
    before = snapshot(ex)
    ex.upload.value = (upload_entry("strip.png", header_png(8000, 1)),)
    assert "strip.png" in ex.message.value and "a strip" in ex.message.value
    assert same(snapshot(ex), before)
    ex.upload.value = (upload_entry("white.png", png_of(Image.new("RGB", (40, 40), "white"))),)
    assert "infinite" in ex.message.value
    assert same(snapshot(ex), before) and ex.upload.value == ()
    ex.upload.value = (upload_entry("grey.png", png_of(Image.new("RGB", (40, 40), "grey"))),)
    assert ex.state["image"] == 2 and len(ex.images) == 3 and "grey.png" in ex.message.value


def test_integrated_gradients_and_deletion_say_what_dtype_the_model_takes():
    model = resnet18_narrow(width=4).eval()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    message = "x: the model's parameters are torch.float32 but the input is torch.float64"
    with pytest.raises(TypeError, match=message):
        attributions.integrated_gradients(model, x, 0, steps=2)
    with pytest.raises(TypeError, match=message):
        faithfulness.deletion_auc(model, x, torch.rand(1, 32, 32), 0, steps=2)
