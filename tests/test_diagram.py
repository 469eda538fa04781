"""The BasicBlock diagram: every name it labels is one ``capture`` accepts on a real torchvision
ResNet-18, what it claims about the block holds there, and it draws readable text without
touching matplotlib's settings."""

import itertools

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from torchvision.models import resnet18  # noqa: E402

from gradcam_edu import variants  # noqa: E402
from gradcam_edu.capture import capture  # noqa: E402
from gradcam_edu.diagram import HOOK_GID, basic_block_diagram, hook_points  # noqa: E402


def labelled_names(fig: Figure) -> list[str]:
    """The hook-point names the figure shows, read from its text artists."""
    return [t.get_text() for t in fig.findobj(Text) if t.get_gid() == HOOK_GID]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return resnet18(weights=None).eval()


@pytest.mark.parametrize("block, downsample", [("layer4.1", False), ("layer4.0", True),
                                               ("layer2.0", True)])
def test_every_labelled_name_is_captured_on_a_torchvision_resnet18(model, block, downsample):
    names = labelled_names(basic_block_diagram(block, downsample=downsample))
    expected = [f"{block}.conv1", f"{block}.bn1", f"{block}.relu#0", f"{block}.conv2",
                f"{block}.bn2", f"{block}.pre_relu", f"{block}.relu#1", block]
    if downsample:
        expected += [f"{block}.downsample.0", f"{block}.downsample.1"]
    assert sorted(names) == sorted(expected) == sorted(hook_points(block, downsample).values())
    plain = [n for n in names if not n.endswith(".pre_relu")]
    x = torch.rand(1, 3, 64, 64)
    for net, wanted in [(model, plain), (variants.with_sum_points(model), names)]:
        with capture(net, wanted) as cap:
            cap.forward(x)
            cap.backward(target=0)
            assert set(cap.activations) == set(cap.gradients) == set(wanted)
            for name in wanted:
                assert torch.isfinite(cap.gradients[name]).all(), name
                assert cap.gradients[name].shape == cap.activations[name].shape, name


def test_what_the_diagram_says_holds_on_the_block(model):
    """relu#1 is the block output; relu#0 overwrote bn1's output (capture kept bn1's own
    values); at (+) bn2's output gets exactly the sum's gradient (the copy to the branch)."""
    b = "layer4.1"
    names = list(hook_points(b).values())
    net = variants.with_sum_points(model)
    with capture(net, names) as cap:
        cap.forward(torch.rand(2, 3, 64, 64))
        cap.backward(target=[1, 2])
        A, G = cap.activations, cap.gradients
        assert torch.equal(A[f"{b}.relu#1"], A[b])
        assert torch.equal(A[f"{b}.relu#1"], A[f"{b}.pre_relu"].clamp(min=0))
        assert torch.equal(A[f"{b}.relu#0"], A[f"{b}.bn1"].clamp(min=0))
        assert (A[f"{b}.bn1"] < 0).any()            # bn1's values, not the ReLU's
        assert torch.equal(G[f"{b}.bn2"], G[f"{b}.pre_relu"])     # copied at (+)
        assert torch.equal(G[f"{b}.relu#1"], G[b])


def _boxes(fig: Figure):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts], texts


@pytest.mark.parametrize("downsample", [False, True])
def test_text_is_large_and_never_overlaps(downsample):
    fig = basic_block_diagram("layer4.0", downsample=downsample)
    assert tuple(fig.get_size_inches()) == (11.0, 4.5)
    boxes, texts = _boxes(fig)
    assert min(t.get_fontsize() for t in texts) >= 11
    assert len(boxes) > 20
    page = fig.bbox
    for text, box in boxes:
        assert page.x0 <= box.x0 and box.x1 <= page.x1, text      # inside the figure
        assert page.y0 <= box.y0 and box.y1 <= page.y1, text
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert not box_a.overlaps(box_b), (a, b)


def test_rcparams_are_left_unchanged():
    before = dict(matplotlib.rcParams)
    basic_block_diagram()
    basic_block_diagram("layer3.0", downsample=True)
    assert dict(matplotlib.rcParams) == before


def test_draws_into_a_given_axes():
    fig = Figure(figsize=(11, 4.5))
    ax = fig.add_subplot()
    assert basic_block_diagram("layer1.0", ax=ax) is fig
    assert "layer1.0.relu#0" in labelled_names(fig)


@pytest.mark.parametrize("bad", ["layer4.1.conv2", "layer4.1.relu#1", "layer4.1.pre_relu",
                                 "", "layer4..1", "layer4.1.downsample.0", " layer4.1"])
def test_bad_block_name_says_what_was_expected(bad):
    with pytest.raises(ValueError, match=r"block_name: expected the dotted name of a residual "
                                         r"block, such as 'layer4.1'"):
        basic_block_diagram(bad)


def test_bad_types_are_named():
    with pytest.raises(TypeError, match="block_name: expected .* got int"):
        basic_block_diagram(4)
    with pytest.raises(TypeError, match="downsample: expected True .* or False"):
        basic_block_diagram("layer4.0", downsample="yes")
    with pytest.raises(TypeError, match="ax: expected a matplotlib Axes or None, got str"):
        basic_block_diagram("layer4.1", ax="left")
