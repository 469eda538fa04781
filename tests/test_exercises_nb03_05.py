"""Exercise checkers of notebooks 03-05: each accepts a right answer and rejects wrong ones
with a message that says what is wrong."""

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image, ImageDraw

from gradcam_edu.exercises import nb03, nb04, nb05
from gradcam_edu.models import resnet18_narrow, torchvision_resnet
from gradcam_edu.truncate import truncate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def accepted(v):
    assert v.ok, str(v)
    assert str(v).startswith("Correct!")


def rejected(v, *words):
    assert not v.ok, str(v)
    assert str(v).startswith("Not yet:")
    for w in words:
        assert w in v.message, v.message


# ----------------------------------------------------------------------------- nb03
def stem(model, x):
    return model.maxpool(model.relu(model.bn1(model.conv1(x))))


def test_cut_logits_accepts_the_cut(model, x):
    head = torch.nn.Linear(32, 6)

    def right(m, x):
        return head(torch.flatten(m.avgpool(m.layer3(m.layer2(m.layer1(stem(m, x))))), 1))

    accepted(nb03.check_cut_logits(right, model, head, "layer3.1", x))


def test_cut_logits_rejects_common_mistakes(model, x):
    head = torch.nn.Linear(32, 6)

    def no_pool(m, x):
        return head(m.layer3(m.layer2(m.layer1(stem(m, x)))).mean(dim=1).flatten(1))

    def too_early(m, x):
        h = m.layer3[0](m.layer2(m.layer1(stem(m, x))))
        return head(torch.flatten(m.avgpool(h), 1))

    def max_pool(m, x):
        return head(m.layer3(m.layer2(m.layer1(stem(m, x)))).amax(dim=(2, 3)))

    rejected(nb03.check_cut_logits(no_pool, model, head, "layer3.1", x), "pool over the positions")
    rejected(nb03.check_cut_logits(too_early, model, head, "layer3.1", x), "layer3.0")
    rejected(nb03.check_cut_logits(max_pool, model, head, "layer3.1", x), "average")
    rejected(nb03.check_cut_logits(lambda m, x: m(x), model, model.fc, "layer4.0", x),
             "full model")
    rejected(nb03.check_cut_logits("cut_logits", model, head, "layer3.1", x), "itself")


def test_cut_logits_leaves_the_model_alone_and_reads_stage_names(model, x):
    head = torch.nn.Linear(32, 6)

    def right(m, x):
        return head(torch.flatten(m.avgpool(m.layer3(m.layer2(m.layer1(stem(m, x))))), 1))

    def too_early(m, x):
        return head(torch.flatten(m.avgpool(m.layer3[0](m.layer2(m.layer1(stem(m, x))))), 1))

    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        accepted(nb03.check_cut_logits(right, model, head, "layer3", x))
        rejected(nb03.check_cut_logits(too_early, model, head, "layer3", x),
                 "you cut after layer3.0, not after layer3")
        assert model.training
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    finally:
        model.eval()


def test_confounders():
    accepted(nb03.check_confounders(["head", "layer", "depth"]))
    accepted(nb03.check_confounders(["fc", "hooked layer", "truncation"]))
    rejected(nb03.check_confounders(["layer"]), "1 of 3", "model.fc")
    rejected(nb03.check_confounders(["head", "layer", "learning rate"]), "learning rate")
    assert nb03._factor_of("layer4.1") == "depth"      # exact words before prefixes


def test_probe_cam(model, x):
    A = torch.rand(32, 4, 4, generator=torch.Generator().manual_seed(1)) - 0.3
    W = torch.randn(6, 32, generator=torch.Generator().manual_seed(2))
    right = torch.einsum("k,khw->hw", W[2], A)
    accepted(nb03.check_probe_cam(right, A, W, 2))
    rejected(nb03.check_probe_cam(right.clamp(min=0), A, W, 2), "signed")
    rejected(nb03.check_probe_cam(right / 16, A, W, 2), "CAM / (h w)")
    rejected(nb03.check_probe_cam(torch.einsum("k,khw->hw", W[3], A), A, W, 2), "class 3")
    rejected(nb03.check_probe_cam(A.mean(dim=0), A, W, 2), "same weight")
    rejected(nb03.check_probe_cam(right.flatten(), A, W, 2), "shape")


# ----------------------------------------------------------------------------- nb04
def test_layer_cam():
    accepted(nb04.check_layer_cam(lambda A, G: (G.clamp(min=0) * A).sum(1)))
    rejected(nb04.check_layer_cam(lambda A, G: (G * A).sum(1)), "HiResCAM")
    rejected(nb04.check_layer_cam(lambda A, G: (G.mean((2, 3), keepdim=True) * A).sum(1)),
             "Grad-CAM")
    rejected(nb04.check_layer_cam(lambda A, G: G.clamp(min=0) * A), "channels")
    rejected(nb04.check_layer_cam(lambda A, G: (G.abs() * A).sum(1)), "not an absolute")

    def in_place(A, G):
        return (G.clamp_(min=0) * A).sum(1)

    rejected(nb04.check_layer_cam(in_place), "in place")


def test_completeness_error():
    def right(a, fx, fb):
        d = fx - fb
        return (a.sum(dim=(1, 2, 3)) - d).abs() / d.abs()

    accepted(nb04.check_completeness_error(right))
    rejected(nb04.check_completeness_error(lambda a, fx, fb: a.sum((1, 2, 3)) - (fx - fb)),
             "divide")
    rejected(nb04.check_completeness_error(
        lambda a, fx, fb: (a.sum((1, 2, 3)) - (fx - fb)) / (fx - fb)), "negative")
    rejected(nb04.check_completeness_error(
        lambda a, fx, fb: (a.sum((1, 2, 3)) - fx).abs() / fx.abs()), "F(x) alone")
    rejected(nb04.check_completeness_error(lambda a, fx, fb: a.sum(1)), "one error per image")


def test_head_blind():
    accepted(nb04.check_head_blind("eigencam"))
    accepted(nb04.check_head_blind("Eigen-CAM"))
    rejected(nb04.check_head_blind("gradcam"), "ignores G")
    rejected(nb04.check_head_blind("guided backprop"), "not one of the methods")
    rejected(nb04.check_head_blind(3), "method name")


# ----------------------------------------------------------------------------- nb05
def test_verdict_rule_exercise():
    src, iso = (0.10, 0.05, 0.15), [(0.01, -0.02, 0.04), (0.00, -0.03, 0.02)]
    accepted(nb05.check_verdict("inconclusive", iso, src))          # 0.04 reaches above 0
    accepted(nb05.check_verdict("confounded", iso, src, margin=0.04))   # ruled out at 0.04
    rejected(nb05.check_verdict("supported", iso, src), "EVERY isolated")
    rejected(nb05.check_verdict("unsupported", iso, src), "ruled out")
    rejected(nb05.check_verdict("confounded", iso, src), "ruled out")
    rejected(nb05.check_verdict("maybe", iso, src), "not a verdict")
    half = [(0.05, 0.02, 0.08), (-0.03, -0.05, -0.01)]
    accepted(nb05.check_verdict("mixed", half, src))
    rejected(nb05.check_verdict("supported", half, src), "EVERY")
    accepted(nb05.check_verdict("supported", [(0.05, 0.02, 0.08)], src))
    # the same intervals against a margin of 0.03: the lower end 0.02 no longer counts
    accepted(nb05.check_verdict("inconclusive", [(0.05, 0.02, 0.08)], src, margin=0.03))
    accepted(nb05.check_verdict("unsupported", [(0.05, 0.02, 0.08)], src, margin=0.08))
    accepted(nb05.check_verdict("unsupported", [(-0.1, -0.2, -0.05)], None))


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    img = Image.new("RGB", (160, 120), (40, 80, 160))
    draw = ImageDraw.Draw(img)
    draw.rectangle((10, 10, 60, 100), fill=(250, 30, 30))
    draw.ellipse((90, 30, 150, 90), fill=(30, 230, 60))
    path = tmp_path_factory.mktemp("img") / "photo.png"
    img.save(path)
    return path


def test_model_input(photo):
    img = Image.open(photo).convert("RGB")
    right = TF.to_tensor(TF.center_crop(TF.resize(img, 224), [224, 224]))[None]
    accepted(nb05.check_model_input(right, photo))
    rejected(nb05.check_model_input(right[0], photo), "batch axis")
    rejected(nb05.check_model_input(right * 255, photo), "[0, 1]")
    rejected(nb05.check_model_input((right * 255).to(torch.uint8), photo), "floats")
    rejected(nb05.check_model_input(right.permute(0, 2, 3, 1), photo), "channels are last")
    squashed = TF.to_tensor(img.resize((224, 224)))[None]
    rejected(nb05.check_model_input(squashed, photo), "squashed")
    rejected(nb05.check_model_input(right.flip(1), photo), "BGR")
    rejected(nb05.check_model_input(F.interpolate(right, size=(200, 200)), photo), "224 x 224")
    rejected(nb05.check_model_input(img, photo), "to_tensor")


def test_last_block():
    r50 = torchvision_resnet("resnet50", weights="random")
    accepted(nb05.check_last_block(r50, "layer4.2"))
    accepted(nb05.check_last_block(r50, "layer4"))
    rejected(nb05.check_last_block(r50, "layer4.2.conv3"), "inside the last block")
    rejected(nb05.check_last_block(r50, "layer4.2.relu"), "3 times")
    rejected(nb05.check_last_block(r50, "avgpool"), "no spatial grid")
    rejected(nb05.check_last_block(r50, "layer4.1"), "before the last block")
    rejected(nb05.check_last_block(r50, "layer5"), "no layer")
    cut = truncate(resnet18_narrow(width=8), "layer3.1", head="probe")
    accepted(nb05.check_last_block(cut, "layer3.1"))
