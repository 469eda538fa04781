"""The live explorer, driven from Python: state, displayed images, and the model work each
change costs (forwards / backwards), on a random-weight narrow ResNet at 64 x 64; its static
snapshot (the PNG of its display bundle); the outlines and scores it shows on the shapes
world (224 x 224)."""

import base64
import datetime
import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gradcam_edu import cams, layers, views
from gradcam_edu.capture import hook_count
from gradcam_edu.explorer import Explorer
from gradcam_edu.images import as_image_tensor, decode_image, fit_image, to_uint8
from gradcam_edu.metrics import energy_pointing_game, pointing_game, target_share
from gradcam_edu.models import plain_cnn
from gradcam_edu.session import GroundTruth
from gradcam_edu.shapes import shapes_sample

NAMES = ["circle", "square", "triangle", "star", "cross", "ring"]
SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def ex(model, images):
    return Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE)


class ForwardCounter:
    """Counts the model's forwards with a hook of the test's own (removed on exit)."""

    def __init__(self, model):
        self.model, self.n = model, 0

    def __enter__(self):
        self.handle = self.model.register_forward_hook(self._hook)
        return self

    def _hook(self, *args):
        self.n += 1

    def __exit__(self, *exc):
        self.handle.remove()


def png(widget) -> bytes:
    return bytes(widget.value)


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def upload_entry(name: str, content: bytes) -> dict:
    return {"name": name, "type": "image/png", "size": len(content),
            "content": memoryview(content),
            "last_modified": datetime.datetime.now(datetime.UTC)}


# ----------------------------------------------------------------------------- defaults
def test_defaults_layers_methods_class(ex, model, images):
    assert ex.layers == layers.default_layers(model, images[:1])
    assert ex.layers[0] == "conv1" and ex.layers[-1] == "layer4"
    assert "layer4.1.conv2" in ex.layers and "layer4.1" in ex.layers
    assert "layer2.0.downsample.0" in ex.layers and "layer2.0.downsample" not in ex.layers
    assert not any(".bn" in n or "relu" in n for n in ex.layers)
    assert ex.methods == list(cams.GRADIENT_METHODS)
    s = ex.state
    assert s == {"image": 0, "layer": "layer4", "class": s["class"], "class_name": s["class_name"],
                 "method": "gradcam", "alpha": 0.5}
    top = int(model(images[:1]).argmax())
    assert s["class"] == top and s["class_name"] == NAMES[top]
    assert ex.current_map.shape == (SIZE, SIZE)
    assert 0.0 <= float(ex.current_map.min()) and float(ex.current_map.max()) <= 1.0
    assert png_size(png(ex.overlay_image)) == (SIZE, SIZE)
    assert png_size(png(ex.input_image)) == (SIZE, SIZE)
    assert ex.counts == {"forward": 1, "backward": 1, "extra_forward": 0}


def test_class_dropdown_shows_class_names(ex):
    assert [label for label, _ in ex.class_dropdown.options] == NAMES
    ex.class_dropdown.value = 5
    assert ex.class_dropdown.label == "ring" and ex.state["class_name"] == "ring"
    assert "ring" in ex.probabilities.value and "sigmoid" in ex.probabilities.value


def test_layer_slider_label_shows_name_and_grid(ex):
    ex.layer_slider.value = ex.layers.index("layer3.1.conv2")
    assert "layer3.1.conv2" in ex.layer_label.value and "(4x4)" in ex.layer_label.value
    ex.layer_slider.value = 0
    assert "conv1" in ex.layer_label.value and "(32x32)" in ex.layer_label.value


# ----------------------------------------------------------------------------- cheap changes
@pytest.mark.parametrize("widget, value, key, expected", [
    ("layer_slider", 3, "layer", "layer1.0"),
    ("method_dropdown", "hirescam", "method", "hirescam"),
    ("method_dropdown", "eigencam", "method", "eigencam"),
    ("alpha_slider", 0.9, "alpha", 0.9),
])
def test_cheap_change_updates_without_model_work(ex, model, widget, value, key, expected):
    # not the last layer: there (GAP + linear head) Grad-CAM and HiResCAM are equal (CAM)
    ex.layer_slider.value = ex.layers.index("layer3.1.conv2")
    before_png, before_map = png(ex.overlay_image), ex.current_map.clone()
    before_counts = dict(ex.counts)
    with ForwardCounter(model) as fwd:
        getattr(ex, widget).value = value
    assert ex.state[key] == expected
    assert png(ex.overlay_image) != before_png
    assert fwd.n == 0 and ex.counts == before_counts          # no forward, no backward
    if key == "alpha":
        assert torch.equal(ex.current_map, before_map)        # the map itself is unchanged
    else:
        assert not torch.equal(ex.current_map, before_map)


def test_map_equals_one_shot_explain(ex, images):
    for layer, method in [("layer4.1.conv2", "gradcam"), ("layer2.0", "layercam"),
                          ("conv1", "gradcam++")]:
        ex.set(layer=layer, method=method, target="star")
        expected = cams.explain(ex.model, images[:1], [layer], 3, methods=[method])
        torch.testing.assert_close(ex.current_map, expected[layer][method][0],
                                   atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- class, image
def test_class_change_one_backward_no_forward_then_cached(ex, model):
    start = ex.state["class"]
    other = (start + 1) % len(NAMES)
    before_png, before_map = png(ex.overlay_image), ex.current_map.clone()
    with ForwardCounter(model) as fwd:
        ex.class_dropdown.value = other
        assert ex.counts["backward"] == 2 and ex.counts["forward"] == 1
        assert not torch.equal(ex.current_map, before_map)
        assert png(ex.overlay_image) != before_png
        assert ex.state["class"] == other and ex.top_class.value is False  # chosen by hand
        ex.class_dropdown.value = start        # back: cached gradients, no backward at all
        assert ex.counts["backward"] == 2
        torch.testing.assert_close(ex.current_map, before_map)
    assert fwd.n == 0


def test_new_image_one_forward(ex, model):
    before_png = png(ex.input_image)
    before = dict(ex.counts)
    with ForwardCounter(model) as fwd:
        ex.image_slider.value = 2
    assert fwd.n == 1 and ex.counts["forward"] == before["forward"] + 1
    assert ex.counts["backward"] <= before["backward"] + 1
    assert ex.state["image"] == 2 and png(ex.input_image) != before_png
    assert ex.state["class"] == ex.session.top_class()                # follows the top class


def test_hand_chosen_class_kept_across_images(ex):
    ex.class_dropdown.value = 4
    ex.image_slider.value = 1
    assert ex.state["class"] == 4
    ex.top_class.value = True
    assert ex.state["class"] == ex.session.top_class()


def test_no_hook_left_and_mode_restored_after_many_updates(model, images):
    model.train()
    try:
        ex = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE)
        assert hook_count(model) == 0
        for k in range(30):
            ex.set(image=k % 3, layer=k % len(ex.layers), target=k % 6,
                   method=ex.methods[k % len(ex.methods)], alpha=(k % 10) / 10)
            assert hook_count(model) == 0
        assert all(m.training for m in model.modules())
        # the gradient cache stays within its bound (at least the current entry is kept)
        small = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE, cache_mb=0)
        for c in range(6):
            small.class_dropdown.value = c
        assert small.session.cached_gradients == 1
    finally:
        model.eval()
    assert hook_count(model) == 0


# ----------------------------------------------------------------------------- uploads
def test_upload_png_appends_and_shows_it(ex):
    pic = np.zeros((90, 120, 3), dtype=np.uint8)
    pic[:, :60] = (255, 0, 0)
    buf = io.BytesIO()
    Image.fromarray(pic).save(buf, format="PNG")
    before = dict(ex.counts)
    ex.upload.value = (upload_entry("mine.png", buf.getvalue()),)
    assert ex.state["image"] == 3 and ex.image_slider.max == 3
    assert ex.counts["forward"] == before["forward"] + 1
    assert "mine.png" in ex.message.value and "mine.png" in ex.input_caption.value
    shown = np.asarray(Image.open(io.BytesIO(png(ex.input_image))))
    assert shown.shape == (SIZE, SIZE, 3)
    assert shown[SIZE // 2, 2, 0] > 200 and shown[SIZE // 2, -3, 0] < 50   # centre crop
    assert ex.upload.value == ()


def test_upload_garbage_gives_message_not_exception(ex):
    before = dict(ex.counts), ex.state
    ex.upload.value = (upload_entry("notes.png", b"this is not an image at all"),)
    assert "notes.png" in ex.message.value and "not a readable image" in ex.message.value
    assert (dict(ex.counts), ex.state) == before
    ex.upload.value = (upload_entry("empty.png", b""),)
    assert "empty" in ex.message.value


def test_decode_and_fit_image():
    with pytest.raises(ValueError, match="not a readable image"):
        decode_image(b"\x89PNG garbage", 32)
    x = fit_image(Image.new("L", (50, 20), 128), 16)
    assert x.shape == (3, 16, 16) and abs(float(x.mean()) - 128 / 255) < 1e-6


# ----------------------------------------------------------------------------- other inputs
def test_pil_list_plain_cnn_and_softmax():
    torch.manual_seed(0)
    net = plain_cnn(num_classes=6, widths=(4, 8, 8, 8)).eval()
    pics = [Image.new("RGB", (80, 60), c) for c in ("red", "blue")]
    ex = Explorer(net, pics, NAMES, image_size=SIZE, display_size=SIZE, probabilities="softmax")
    assert ex.layers[:2] == ["features.block1.conv", "features.block1"]
    assert ex.layers[-1] == "features"
    assert "softmax" in ex.probabilities.value
    ex.image_slider.value = 1
    assert ex.state["image"] == 1


def test_shapes_dataset_and_display_bundle(model):
    from gradcam_edu.shapes import ShapesDataset

    ds = ShapesDataset("test", 2, cache=False)
    ex = Explorer(model, ds, NAMES, image_size=SIZE, layers=["layer3", "layer4"],
                  methods=["gradcam", "hirescam"], layer="layer3", target="ring")
    assert ex.state["layer"] == "layer3" and ex.state["class_name"] == "ring"
    assert png_size(png(ex.overlay_image)) == (224, 224)          # display_size >= 224
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    with pytest.raises(ValueError, match="unknown class 'rings'"):
        ex.set(target="rings")


def test_score_cam_lazy_and_cached(model, images):
    ex = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE,
                  layers=["layer4"], methods=["gradcam", "scorecam"], score_cam_batch=32)
    assert ex.counts["extra_forward"] == 0
    with ForwardCounter(model) as fwd:
        ex.method_dropdown.value = "scorecam"
        batches = ex.counts["extra_forward"]
        assert batches == 2 and fwd.n == batches                 # 64 channels / 32 per batch
        expected = cams.explain(model, images[:1], ["layer4"], ex.state["class"],
                                methods=["scorecam"])["layer4"]["scorecam"][0]
        torch.testing.assert_close(ex.current_map, expected, atol=1e-5, rtol=1e-4)
        fwd.n = batches
        ex.method_dropdown.value = "gradcam"
        ex.method_dropdown.value = "scorecam"                    # cached: no new forward
        assert fwd.n == batches and ex.counts["extra_forward"] == batches
    assert "Score-CAM" in ex.message.value and "cached" in ex.message.value
    ex.method_dropdown.value = "gradcam"
    assert ex.message.value == ""                                # the note goes with the map


def test_cam_at_the_head_and_a_message_elsewhere(model, images):
    ex = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE,
                  layers=["layer3", "layer4"], methods=["cam", "gradcam"], layer="layer4")
    assert ex.methods == ["cam", "gradcam"]
    cam_map = ex.current_map.clone()
    ex.set(method="gradcam")   # GAP + linear head: CAM is Grad-CAM up to a positive scale
    torch.testing.assert_close(cam_map, ex.current_map, atol=1e-5, rtol=1e-4)
    ex.set(method="cam", layer="layer3")                         # 32 channels, fc takes 64
    assert ex.current_map is None and ex.state["layer"] == "layer3"
    assert "CAM at layer3" in ex.message.value and "fc_weight" in ex.message.value
    assert "not available" in ex.overlay_caption.value
    assert png_size(png(ex.raw_image))[1] == SIZE                # a note, not a crash
    ex.set(layer="layer4")
    assert ex.current_map is not None and ex.message.value == ""


def test_eigencam_needs_no_backward(model, images):
    ex = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE,
                  methods=["eigencam"], layers=["layer4"])
    assert ex.counts == {"forward": 1, "backward": 0, "extra_forward": 0}
    ex.class_dropdown.value = (ex.state["class"] + 1) % len(NAMES)
    assert ex.counts["backward"] == 0


def test_methods_validated_from_the_registry(model, images):
    with pytest.raises(ValueError, match="methods: unknown method 'gradcamm'"):
        Explorer(model, images, NAMES, image_size=SIZE, methods=["gradcamm"])
    with pytest.raises(ValueError, match="methods: empty list"):
        Explorer(model, images, NAMES, image_size=SIZE, methods=[])
    ex = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE, layers=["layer4"])
    with pytest.raises(ValueError, match=r"method: 'scorecam' \(Score-CAM, needs forwards\) is "
                                         "not available here"):
        ex.set(method="scorecam")                                # not offered here


def test_options_grouped_and_unknown_ones_named(model, images):
    ex = Explorer(model, images, NAMES, image_size=SIZE, layers=["layer4"], display_size=48,
                  cmap="viridis", image_format="png", cache_mb=1, score_cam_batch=8,
                  threads=1, alpha=0.25, target="ring", image=1)
    assert (ex.display.display_size, ex.display.cmap, ex.image_format) == (48, "viridis", "png")
    assert (ex.budget.cache_mb, ex.budget.score_cam_batch, ex.budget.threads) == (1, 8, 1)
    assert ex.state["alpha"] == 0.25 and ex.state["class_name"] == "ring"
    assert ex.state["image"] == 1 and png_size(png(ex.overlay_image)) == (48, 48)
    with pytest.raises(TypeError, match="unknown option 'aplha' \\(did you mean alpha"):
        Explorer(model, images, NAMES, image_size=SIZE, aplha=0.3)
    with pytest.raises(ValueError, match="image_format"):
        Explorer(model, images, NAMES, image_size=SIZE, image_format="gif")


def test_auto_probabilities_follow_the_model_not_the_class_count(images):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 6)).eval()           # 6 classes, says nothing: softmax
    ex = Explorer(net, images, NAMES, image_size=SIZE, display_size=SIZE)
    assert ex.probability_kind == "softmax" and "softmax" in ex.probabilities.value
    torch.testing.assert_close(ex.session.probabilities.sum(), torch.tensor(1.0))
    net.probabilities = "sigmoid"
    assert Explorer(net, images, NAMES, image_size=SIZE).probability_kind == "sigmoid"


def test_views_are_jpeg_by_default_png_on_request(model, images):
    ex = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE, layers=["layer4"])
    assert png(ex.overlay_image)[:2] == b"\xff\xd8" and ex.overlay_image.format == "jpeg"
    assert png(ex.raw_image)[:4] == b"\x89PNG"                   # the raw grid stays exact
    ex = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE, layers=["layer4"],
                  image_format="png")
    assert png(ex.overlay_image)[:4] == b"\x89PNG" and ex.overlay_image.format == "png"
    shown = np.asarray(Image.open(io.BytesIO(png(ex.input_image))))
    assert np.array_equal(shown, to_uint8(ex.session.x))  # lossless


def test_numpy_images_hwc_uint8_and_chw_float(model):
    hwc = (np.random.default_rng(0).random((2, 40, 40, 3)) * 255).astype(np.uint8)
    chw = hwc.transpose(0, 3, 1, 2).astype(np.float32) / 255
    a, b = as_image_tensor(hwc[0], 40), as_image_tensor(chw[0], 40)
    assert a.shape == b.shape == (3, 40, 40)
    torch.testing.assert_close(a, b)
    ex = Explorer(model, hwc, NAMES, image_size=SIZE, display_size=SIZE, layers=["layer4"])
    assert ex.current_map.shape == (SIZE, SIZE)


def test_thread_count_restored(model, images):
    before = torch.get_num_threads()
    ex = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE, threads=2)
    ex.set(image=1, target=2, layer=3, method="layercam")
    assert torch.get_num_threads() == before


def test_stage_label_says_it_shows_its_last_block(model, images):
    ex = Explorer(model, images, NAMES, image_size=SIZE, layer="layer4")
    assert "the output of layer4.1" in ex.layer_label.value
    ex.set(layer="layer4.1")
    assert "the output of" not in ex.layer_label.value


# ----------------------------------------------------------------------------- no kernel
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_bundle_holds_the_live_view_and_a_png_snapshot_of_it(model, images):
    ex = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE, image_format="png",
                  layers=["layer3", "layer4"])
    bundle = ex._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == ex.widget.model_id          # ipywidgets' own
    assert "\n" not in bundle["text/plain"] and "Explorer(" in bundle["text/plain"]
    shot = decoded(base64.b64decode(bundle["image/png"]))
    # views.snapshot's layout at display size 64, 6 classes (gap 8, text line 14): width
    # 8 + (64 + 8) + (64 + 8) + (64 + 74 + 8) + 250 + 8 = 556; height 4 * 8 + 3 * 14 +
    # max(2 * 14 + 64, 14 * (6 + 1)) = 172
    assert shot.shape == (172, 556, 3)
    top = 8 + 14 + 8 + 2 * 14                  # the header, a gap, the two caption lines
    for x, widget in ((8, ex.input_image), (80, ex.overlay_image), (152, ex.raw_image)):
        view = decoded(png(widget))            # the pixels the widget shows, exactly
        h, w = view.shape[:2]
        assert np.array_equal(shot[top:top + h, x:x + w], view), widget
    before = shot[top:top + SIZE, 80:80 + SIZE].copy()
    ex.set(layer="layer3")                     # the snapshot follows the view
    after = decoded(base64.b64decode(ex._repr_mimebundle_()["image/png"]))
    assert not np.array_equal(after[top:top + SIZE, 80:80 + SIZE], before)
    ex.widget.close()                          # no live view left: the snapshot remains
    bundle = ex._repr_mimebundle_()
    assert WIDGET_VIEW not in bundle and decoded(base64.b64decode(bundle["image/png"])).shape \
        == (172, 556, 3)


def test_snapshot_lists_the_probabilities_and_the_selection(model, images):
    ex = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE, layers=["layer4"],
                  target="ring")
    shot = np.asarray(ex.snapshot())
    probs = ex.session.probabilities
    x = 8 + 72 + 72 + 146                      # the probability column
    for row, c in enumerate(probs.argsort(descending=True).tolist()):
        y = 30 + 14 * (row + 1) + 7            # the middle of the row's bar
        bar = (shot[y, x + 112:x + 214] == (0x3B, 0x7D, 0xD8)).all(axis=1)
        assert int(bar.sum()) == max(1, round(float(probs[c]) * 100)) + 1, NAMES[c]
        selected = (shot[30 + 14 * (row + 1), x + 240] == (0xDD, 0xE8, 0xFA)).all()
        assert bool(selected) == (NAMES[c] == "ring")


def test_snapshot_layout_by_hand():
    red, blue = Image.new("RGB", (10, 20), "red"), Image.new("RGB", (30, 20), "blue")
    shot = views.snapshot("header", [("a", red), ("b", blue)], torch.tensor([0.25, 0.5]),
                          ["x", "y"], 0, "softmax", None, "the message")
    # width 8 + (10 + 8) + (30 + 8) + 250 + 8; height 4 * 8 + 3 * 14 + max(2 * 14 + 20, 14 * 3)
    assert shot.size == (322, 122)
    arr = np.asarray(shot)
    top = 8 + 14 + 8 + 2 * 14
    assert (arr[top:top + 20, 8:18] == (255, 0, 0)).all()
    assert (arr[top:top + 20, 26:56] == (0, 0, 255)).all()
    assert (arr[top + 20:top + 28, 8:56] == 255).all()          # white below the panels
    with pytest.raises(ValueError, match="panels: expected images of one height"):
        views.snapshot("h", [("a", red), ("b", Image.new("RGB", (5, 21)))], torch.ones(2),
                       ["x", "y"], 0, "softmax", None, "")


# ----------------------------------------------------------------------------- measuring
def test_outline_is_the_two_pixel_inner_boundary():
    mask = np.zeros((10, 10), dtype=bool)
    mask[1:9, 1:9] = True                                       # an 8 x 8 block
    edge = np.asarray(views.outline(mask, 10)) > 0
    inner = np.zeros_like(mask)
    inner[3:7, 3:7] = True                                      # eroded twice: 4 x 4 left
    assert np.array_equal(edge, mask & ~inner) and int(edge.sum()) == 64 - 16
    assert (np.asarray(views.outline(mask, 20)) > 0).sum() == 16 * 16 - 12 * 12


def test_ground_truth_scores_by_hand():
    """A 40 x 40 map against a target object (columns 0-9) and another (columns 30-39)."""
    target = torch.zeros(40, 40, dtype=torch.bool)
    target[:, :10] = True
    other = torch.zeros(40, 40, dtype=torch.bool)
    other[:, 30:] = True
    truth = GroundTruth([torch.stack([target, other])], [[3, 5]], 1, 40)
    cam = torch.zeros(40, 40)
    cam[20, 5], cam[20, 35], cam[20, 20] = 2.0, 1.0, 1.0
    got = truth.scores(cam, 0, 3)
    assert got["pointing"] is True                              # the peak is on the target
    assert got["energy"] == pytest.approx(2 / 4) and got["target_share"] == pytest.approx(2 / 3)
    got = truth.scores(cam, 0, 5)                               # the other object's view
    assert got["energy"] == pytest.approx(1 / 4) and got["target_share"] == pytest.approx(1 / 3)
    assert got["pointing"] is False
    for col, hit in ((24, True), (25, False)):  # 15 and 16 px from column 9
        peak = torch.zeros(40, 40)
        peak[20, col] = 1.0
        got = truth.scores(peak, 0, 3)
        assert got["pointing"] is hit and got["energy"] == 0.0
        assert got["target_share"] == 0.5                       # no mass on either: 0.5
    assert truth.scores(cam, 0, 4) is None and truth.scores(cam, 1, 3) is None
    one = GroundTruth([target[None]], [[3]], 1, 40).scores(cam, 0, 3)
    assert one["target_share"] is None and one["energy"] == pytest.approx(2 / 4)


def test_masks_are_fitted_like_the_images():
    """40 x 80 masks to 20: short side halved (nearest), then the centre 20 columns of 40."""
    mask = torch.zeros(1, 40, 80, dtype=torch.bool)
    mask[0, :20, 20:40] = True
    _, fitted = GroundTruth([mask], [[0]], 1, 20).objects(0)
    expected = torch.zeros(1, 20, 20, dtype=torch.bool)
    expected[0, :10, :10] = True
    assert torch.equal(fitted, expected)


@pytest.fixture(scope="module")
def world():
    return shapes_sample(4, split="test")      # classes [[1], [1, 4], [2], [2, 5]]


def test_scores_shown_are_the_metrics_of_the_shown_map(model, world):
    images, masks, classes = world
    ex = Explorer(model, images, NAMES, masks=masks, classes=classes, layers=["layer3", "layer4"],
                  image=1, target=classes[1][1])
    assert ex.mask_outline.layout.display is None and ex.score_line.layout.display is None
    for layer, method, image, k in (("layer4", "gradcam", 1, 1), ("layer3", "layercam", 1, 0),
                                    ("layer3", "gradcam++", 0, 0)):
        ex.set(image=image, layer=layer, method=method, target=classes[image][k])
        cam, target = ex.current_map[None], masks[image][k][None]
        expected = {"energy": float(energy_pointing_game(cam, target)[0]),
                    "pointing": bool(pointing_game(cam, target, 15)[0]),
                    "target_share": (float(target_share(cam, target, masks[image][1 - k][None])[0])
                                     if len(classes[image]) == 2 else None)}
        assert ex.current_scores == expected
        line = ex.score_line.value
        assert f"energy {expected['energy']:.2f}" in line
        assert ("pointing (15 px) hit" if expected["pointing"] else "pointing (15 px) miss") in line
        assert (f"target share {expected['target_share']:.2f}" if image == 1
                else "target share -- (one object)") in line
    ex.set(target="ring")                                       # not in image 0
    assert ex.current_scores is None and "no ring in this image: no scores" in ex.score_line.value
    ex.add_image(torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(3)))
    assert ex.current_scores is None and "no object masks for this image" in ex.score_line.value


def test_outline_toggle_changes_the_overlay_only(model, world):
    images, masks, classes = world
    ex = Explorer(model, images, NAMES, masks=masks, classes=classes, layers=["layer4"],
                  image_format="png", image=1, target=classes[1][0])
    plain = png(ex.overlay_image)
    counts = dict(ex.counts)
    ex.mask_outline.value = True
    shown = decoded(png(ex.overlay_image))
    assert png(ex.overlay_image) != plain and ex.counts == counts
    edges = [np.asarray(views.outline(m.numpy(), 224)) > 0 for m in masks[1]]
    assert (shown[edges[0]] == 255).all()                       # the selected class: white
    assert (shown[edges[1] & ~edges[0]] == 0).all()             # the other object: black
    assert np.array_equal(shown[~(edges[0] | edges[1])],
                          decoded(plain)[~(edges[0] | edges[1])])
    ex.set(target=classes[1][1])                                # the colours follow the class
    assert (decoded(png(ex.overlay_image))[edges[1]] == 255).all()
    ex.mask_outline.value = False
    ex.set(target=classes[1][0])
    assert png(ex.overlay_image) == plain


def test_masks_and_classes_are_checked(model, world):
    images, masks, classes = world
    with pytest.raises(ValueError, match="masks, classes: expected both"):
        Explorer(model, images, NAMES, masks=masks)
    with pytest.raises(ValueError, match=r"masks, classes: expected one entry per image \(4\)"):
        Explorer(model, images, NAMES, masks=masks[:3], classes=classes[:3])
    with pytest.raises(ValueError, match=r"masks\[1\]: expected a bool \(K, H, W\) tensor with "
                                         "K = len\\(classes\\[1\\]\\) = 1"):
        Explorer(model, images, NAMES, masks=masks, classes=[[1], [1], [2], [2, 5]])
    ex = Explorer(model, images[:1], NAMES, layers=["layer4"])              # no masks
    assert ex.mask_outline.layout.display == "none" and ex.current_scores is None
