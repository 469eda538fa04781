"""The post's code path (gradcam_edu.post): each bug happens as notebook 05 says, and the
fixed path gives the package's maps. ImageNet weights are not on the test machine: a seeded
random-weight torchvision ResNet-18 stands in (same code, other numbers), on the cat photo,
class 282 as in the post."""

import socket

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from gradcam_edu import cams, images, metrics, post, viz
from gradcam_edu.capture import hook_count
from gradcam_edu.models import torchvision_resnet
from gradcam_edu.truncate import truncate

LAYER = "layer4.1.conv2"


@pytest.fixture(scope="module")
def model():
    return torchvision_resnet("resnet18", weights="random", seed=0)


@pytest.fixture(scope="module")
def x():
    return post.post_input(images.course_photo("chelsea"))


@pytest.fixture(scope="module")
def AG(model, x):
    return post._activations_gradients(model, x, post.POST_TARGET, LAYER)


def test_the_posts_preprocessing_is_the_packages(x):
    assert x.shape == (1, 3, 224, 224)
    assert torch.equal(x[0], images.imagenet_preprocess(images.course_photo("chelsea")))


def test_a_module_has_no_grad_and_nothing_leaks(model, x):
    model.train()
    x_before = x.clone()
    try:
        out = post.run_post_grad_cam(model, x, post.POST_TARGET, LAYER)
        assert isinstance(out, AttributeError)
        assert str(out) == "'Conv2d' object has no attribute 'grad'"
        assert all(m.training for m in model.modules())        # its model.eval() undone
    finally:
        model.eval()
    assert not x.requires_grad and torch.equal(x, x_before)     # its requires_grad_ too
    assert all(p.grad is None for p in model.parameters())      # no parameter .grad written
    assert hook_count(model) == 0
    assert post.module_grad(model, x, 282, "conv1") == (
        "AttributeError: 'Conv2d' object has no attribute 'grad'")


def test_pooled_gradients_index_the_batch_axis(AG):
    found = post.batch_axis_indexing(*AG)
    assert found[0] == "pooled_gradients has shape (1, 512)"
    assert found[1].startswith("at i = 0: ValueError: operands could not be broadcast together "
                               "with shapes (1,7,7) (512,)")
    assert found[2] == "at i = 1: IndexError: index 1 is out of bounds for axis 0 with size 1"


def test_where_the_indexing_does_not_raise_it_mixes_images():
    """By hand: 2 images, 2 channels, a 1 x 2 grid, A = 1 everywhere; the gradients are
    constant over space, channel weights (1, 2) for image 0 and (3, 4) for image 1. Fixed:
    the maps are the channel means 1.5 and 3.5, divided by the batch maximum 3.5. As written,
    channel i of *every* image is scaled by image i's weights along the width axis: both
    maps become (mean(1, 3), mean(2, 4)) = (2, 3), divided by 3."""
    A = np.ones((2, 2, 1, 2), dtype=np.float32)
    G = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32).reshape(2, 2, 1, 1) * np.ones(
        (2, 2, 1, 2), dtype=np.float32)
    np.testing.assert_allclose(post.grad_cam_numpy(A, G), [[[2 / 3, 1.0]]] * 2, rtol=1e-6)
    np.testing.assert_allclose(post.grad_cam_numpy(A, G, fix_indexing=True),
                               [[[3 / 7, 3 / 7]], [[1.0, 1.0]]], rtol=1e-6)
    assert np.array_equal(A, np.ones((2, 2, 1, 2)))              # the input is not scaled


def test_the_random_fc_changes_the_top_class_and_leaves_the_model_alone(model, x):
    fc_before = model.fc.weight.clone()
    replaced, before, after = post.random_fc(model, x)
    assert before[0][0] != after[0][0]
    assert before == post.top_classes(model, x)
    assert torch.equal(model.fc.weight, fc_before) and replaced.fc is not model.fc
    assert torch.equal(replaced.layer4[1].conv2.weight, model.layer4[1].conv2.weight)
    _, _, again = post.random_fc(model, x)
    assert again == after                                       # seeded


def test_an_all_zero_map_gives_nan_in_the_post_and_zero_in_the_package(model, x):
    layer, cls, heat = post.nan_case(model, x, (LAYER, "layer4"))
    raw = cams.explain(model, x, [layer], cls, upsample_to_input=False)[layer]["gradcam"]
    A, G = post._activations_gradients(model, x, cls, layer)
    assert bool((cams.grad_cam(torch.from_numpy(A), torch.from_numpy(G)) <= 0).all())
    assert heat.shape == (1, 7, 7) and np.isnan(heat).all()
    assert torch.equal(raw, torch.zeros_like(raw))              # normalize's guard: no NaN
    with pytest.warns(RuntimeWarning, match="invalid value"):
        post.grad_cam_numpy(A, G, fix_indexing=True)


def test_pil_rejects_the_jet_array(AG):
    heat = post.grad_cam_numpy(*AG, fix_indexing=True)
    assert heat.shape == (1, 7, 7)
    with pytest.raises(TypeError, match="Cannot handle this data type"):
        post.post_display(heat)
    assert post.jet_display(heat).startswith(
        "cm.jet gives (1, 7, 7, 4); Image.fromarray: TypeError: Cannot handle this data type")
    assert post.post_display(heat[0], 224, 224).size == (224, 224)   # one map: it works


def test_the_fixed_display_blends_the_course_colours_over_the_image():
    image = torch.zeros(3, 4, 4)
    image[0] = 1.0                                              # a red image
    cam = torch.zeros(4, 4)
    shown = post.fixed_display(image, cam)
    # HEAT_CMAP(0) (inferno: near black), half of it plus half of red
    low = np.asarray(matplotlib.colormaps[viz.HEAT_CMAP](0.0)[:3])
    np.testing.assert_allclose(shown[0, 0], 0.5 * np.array([1.0, 0, 0]) + 0.5 * low, atol=1e-6)
    assert post.fixed_display(image, torch.ones(2, 2)).shape == (4, 4, 3)


def test_pretrained_true_warns_and_never_touches_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network was tried")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert post.pretrained_true() == (
        "UserWarning: The parameter 'pretrained' is deprecated since 0.13 and may be removed "
        "in the future, please use 'weights' instead.")


def test_variable_is_a_plain_tensor_today(x):
    assert post.variable_today(x) == "Variable(x) is a torch.Tensor; same memory as x: True"
    assert type(torch.autograd.Variable(x)) is torch.Tensor


def test_post_bugs_lists_every_bug_with_what_happens(model, x):
    bugs = post.post_bugs(model, x, 282, LAYER)
    assert [b.name.split(" ")[0] for b in bugs] == [
        "layer.grad,", "pooled_gradients[i]", "model.fc", "heatmap", "cm.jet(heatmap)",
        "models.resnet18(pretrained=True)", "Variable(input_tensor)"]
    happens = {b.name.split(" ")[0]: b.happens for b in bugs}
    assert happens["layer.grad,"].startswith("AttributeError")
    assert "IndexError" in happens["pooled_gradients[i]"]
    assert "NaN" in happens["heatmap"] and "49 NaN of 49" in happens["heatmap"]
    assert hook_count(model) == 0 and not any(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("layer", ["conv1", LAYER, "layer4"])
def test_the_fixed_path_is_the_packages_grad_cam(model, x, layer):
    fixed = post.fixed_grad_cam(model, x, 282, layer)
    ref = cams.explain(model, x, [layer], 282, upsample_to_input=False)[layer]["gradcam"]
    np.testing.assert_allclose(fixed, ref.numpy(), atol=1e-6)


def test_the_posts_numpy_once_fixed_is_grad_cam_over_c(AG):
    """Before the ReLU the post's map is the channel mean, Grad-CAM's sum / C. After it the
    post divides by the maximum, the package subtracts the minimum first: the displayed maps
    agree (up to the package's epsilon) wherever the ReLU leaves a zero, as here."""
    A, G = AG
    raw = cams.grad_cam(torch.from_numpy(A), torch.from_numpy(G)).numpy()
    posts = post.post_raw_map(A, G, fix_indexing=True)
    scale = np.abs(raw).max()
    np.testing.assert_allclose(posts * A.shape[1], raw, atol=1e-5 * scale)
    shown = post.grad_cam_numpy(A, G, fix_indexing=True)
    assert shown.min() == 0.0
    package = cams.finalize(torch.from_numpy(raw)).numpy()
    np.testing.assert_allclose(shown, package, atol=1e-5 + 2 * cams.EPS / raw.max())


def test_where_the_map_has_no_zero_the_normalisations_differ():
    """By hand: one channel, A = (1, 2), gradient 1: the post shows (0.5, 1), min-max (0, 1)."""
    A = np.array([1.0, 2.0], dtype=np.float32).reshape(1, 1, 1, 2)
    G = np.ones_like(A)
    np.testing.assert_allclose(post.grad_cam_numpy(A, G, fix_indexing=True), [[[0.5, 1.0]]])
    np.testing.assert_allclose(cams.finalize(cams.grad_cam(torch.from_numpy(A),
                                                           torch.from_numpy(G))).numpy(),
                               [[[0.0, 1.0]]], atol=1e-6)


def test_the_posts_cut_network_is_truncate(model, x):
    mine = post.ModifiedResNet(model).eval()
    cut = truncate(model, after="layer4.0")
    with torch.no_grad():
        torch.testing.assert_close(mine(x), cut(x), rtol=1e-5, atol=1e-5)
    a = cams.explain(mine, x, ["layer4_0.conv1"], 282)["layer4_0.conv1"]["gradcam"][0]
    b = post.fixed_examples(model, x, 282)["3 · cut: layer4.0.conv1"]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_compare_layers_measures_as_the_course_does(model, x):
    rows = post.compare_layers(model, x, 282, mask=torch.ones(224, 224), steps=2)
    assert list(rows) == list(post.COURSE_LAYERS)
    assert [rows[k]["grid"] for k in rows] == [(112, 112), (7, 7), (7, 7), (7, 7)]
    ref = cams.explain(model, x, ["layer4"], 282)["layer4"]["gradcam"]
    torch.testing.assert_close(rows["layer4"]["map"], ref[0], rtol=0, atol=1e-6)
    assert rows["layer4"]["gini"] == pytest.approx(float(metrics.gini(ref)[0]), abs=1e-6)
    for row in rows.values():
        assert row["energy"] == pytest.approx(1.0, abs=1e-6)   # the whole image is the object
        assert 0.0 <= row["deletion"] <= 1.0


def test_bad_input_names_the_argument(model, x):
    with pytest.raises(TypeError, match="image: expected a PIL image"):
        post.post_input(x)
    with pytest.raises(ValueError, match="layer: expected a layer name"):
        post.post_bugs(model, x, 282, "layer4.1.conv9")
    with pytest.raises(ValueError, match=r"x: expected one image \(1, 3, H, W\)"):
        post.compare_layers(model, torch.cat([x, x]), 282)
    assert isinstance(post.post_input(Image.new("L", (300, 260))), torch.Tensor)
