"""The explorer's caches, counted exactly: one backward per new (image, class), least recently
used eviction, Score-CAM per (image, layer, class); and what the widgets show."""

import re

import pytest
import torch

from gradcam_edu import cams, render
from gradcam_edu.capture import capture
from gradcam_edu.explorer import Explorer
from gradcam_edu.images import encode
from gradcam_edu.session import Budget, ImageList, Session

NAMES = ["circle", "square", "triangle", "star", "cross", "ring"]
SIZE = 64
LAYERS = ["layer3", "layer4"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def session(model, images, **budget) -> Session:
    return Session(model, ImageList(images, SIZE), LAYERS, NAMES, budget=Budget(**budget))


def test_gradients_are_cached_per_image_and_class(model, images):
    s = session(model, images)
    s.gradients(2)
    s.gradients(2)
    assert s.counts == {"forward": 1, "backward": 1, "extra_forward": 0}
    s.load(1)
    got = s.gradients(2)                            # same class, another image: a backward
    assert s.counts == {"forward": 2, "backward": 2, "extra_forward": 0}
    with capture(model, LAYERS) as cap:
        cap.forward(images[1:2])
        cap.backward(2)
        for layer in LAYERS:
            torch.testing.assert_close(got[layer], cap.gradients[layer])
    s.load(0)
    s.gradients(2)                                   # image 0's entry is still cached
    assert s.counts == {"forward": 3, "backward": 2, "extra_forward": 0}
    assert s.cached_gradients == 2


def test_gradient_cache_evicts_the_least_recently_used_entry(model, images):
    probe = session(model, images)
    probe.gradients(0)
    entry = probe.cached_bytes()
    s = session(model, images, cache_mb=2.5 * entry / 2**20)      # room for two entries
    for cls in (0, 1, 0, 2):         # 0, 1 computed; 0 a hit, now the most recent; 2 evicts 1
        s.gradients(cls)
    assert s.counts["backward"] == 3 and s.cached_gradients == 2
    s.gradients(0)
    assert s.counts["backward"] == 3
    s.gradients(1)
    assert s.counts["backward"] == 4 and s.cached_gradients == 2


def test_score_cam_is_cached_per_image_layer_and_class(model, images):
    s = session(model, images, score_cam_batch=64)   # layer4: 64 channels, one batch per map
    s.raw_map("layer4", "scorecam", 1)
    assert s.counts["extra_forward"] == 1
    got = s.raw_map("layer4", "scorecam", 4)
    assert s.counts["extra_forward"] == 2
    expected = cams.score_cam(model, s.input, s.activation("layer4"), 4, batch_size=64)[0]
    torch.testing.assert_close(got, expected)
    s.raw_map("layer4", "scorecam", 1)
    s.raw_map("layer4", "scorecam", 4)
    assert s.counts["extra_forward"] == 2            # both cached
    s.load(2)
    got = s.raw_map("layer4", "scorecam", 1)
    assert s.counts["extra_forward"] == 3            # a new image: computed again
    expected = cams.score_cam(model, s.input, s.activation("layer4"), 1, batch_size=64)[0]
    torch.testing.assert_close(got, expected)
    assert s.counts["backward"] == 0                 # Score-CAM needs no gradient


def test_overlay_opacity_0_shows_the_image_and_1_the_map(model, images):
    ex = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE, layers=["layer4"],
                  image_format="png", alpha=0.0)
    assert bytes(ex.overlay_image.value) == bytes(ex.input_image.value)
    ex.alpha_slider.value = 1.0
    heat = render.heat_image(ex.current_map, ex.cmap, SIZE)
    assert bytes(ex.overlay_image.value) == encode(heat, "png")


def bold(table: str) -> list[str]:
    return re.findall(r"font-weight:bold'><td[^>]*>([^<]*)<", table)


def test_a_class_change_redraws_the_probability_table(model, images):
    ex = Explorer(model, images, NAMES, image_size=SIZE, display_size=SIZE, layers=["layer4"])
    assert bold(ex.probabilities.value) == [NAMES[ex.state["class"]]]
    for cls in (2, 5):
        ex.class_dropdown.value = cls
        assert bold(ex.probabilities.value) == [NAMES[cls]]
