"""The claim lab, driven from Python on 3 shapes images (6 factor settings x 5 hook points x
12 model variants precomputed once for the module): its paired differences and intervals equal
a direct computation (the scoreboard on the same variant models, the verdict's bootstrap, and
the shipped evidence's per-pair scores); a toggle shows the new setting's map; "the setting
before your last change" differs in exactly the toggled factor; no hook is left; bad
arguments are named."""

import pytest
import torch

from gradcam_edu import cams, weights
from gradcam_edu.capture import hook_count
from gradcam_edu.claim_lab import (
    CHOICES,
    EXAMPLE_1,
    FACTORS,
    HOOKS,
    ClaimLab,
    layer_name,
    measure_variant,
)
from gradcam_edu.evidence import load_evidence, setting, variant
from gradcam_edu.scoreboard import scoreboard
from gradcam_edu.shapes import shapes_sample
from gradcam_edu.verdict import seed_bootstrap

N, BOOT = 3, 500
TRAINED = {"head": "trained fc", "depth": "full", "skip_gradient": "on", "hook": "conv2"}


@pytest.fixture(scope="module")
def lab():
    return ClaimLab(n_images=N, n_boot=BOOT, progress=False)


@pytest.fixture(scope="module")
def sample():
    return shapes_sample(N, split="test")


def _board(lab, sample, s):
    """The scoreboard's scores of setting ``s`` on the lab's images: its own capture."""
    model = variant(lab.model, 0, s["depth"], s["head"], s["skip_gradient"])
    layer = layer_name(s["depth"], s["hook"])
    board = scoreboard(model, *sample, [layer], methods=("gradcam",))
    return board, board.scores[(layer, "gradcam")]


@pytest.mark.parametrize("a, b", [
    (TRAINED, EXAMPLE_1),                                                     # head alone
    ({"head": "probe", "depth": "cut", "skip_gradient": "on", "hook": "pre_relu"},
     {"head": "trained fc", "depth": "full", "skip_gradient": "on", "hook": "output"}),
])
def test_difference_and_interval_equal_a_direct_computation(lab, sample, a, b):
    board_a, sa = _board(lab, sample, a)
    _, sb = _board(lab, sample, b)
    assert torch.equal(lab.image_index, board_a.image_index)
    assert torch.equal(lab.target_class, board_a.target_class)
    for metric in ("energy", "clarity"):
        assert torch.allclose(lab.measured(a).__getattribute__(metric), sa[metric], atol=1e-5)
        diff = (sa[metric] - sb[metric]).double()
        mean, low, high, _ = seed_bootstrap(diff[None], board_a.image_index, BOOT)
        e = lab.effect(a, b, metric)
        assert e.difference == pytest.approx(float(diff.mean()), abs=1e-5)   # the mean, by hand
        assert (e.difference, e.low, e.high) == pytest.approx((mean, low, high), abs=1e-5)
        assert e.pairs == len(diff) == sum(len(c) for c in sample[2]) and e.images == N
        assert lab.means(a)[metric] == pytest.approx(float(sa[metric].double().mean()), abs=1e-5)


def test_scores_are_those_of_the_shipped_evidence(lab):
    """The evidence scored the same models on the first 128 test images: seed 0's first
    pairs are the lab's."""
    ev = load_evidence()
    p = len(lab.image_index)
    assert torch.equal(ev.image_index[:p], lab.image_index)
    for s in (EXAMPLE_1, TRAINED, {**TRAINED, "hook": "pre_relu"}):
        key = setting(s["depth"], s["head"], layer_name(s["depth"], s["hook"]),
                      s["skip_gradient"])
        for metric in ("energy", "clarity"):
            assert torch.allclose(getattr(lab.measured(s), metric), ev.get(key, metric)[0, :p],
                                  atol=1e-5)


def test_the_map_is_the_grad_cam_of_the_setting(lab, sample):
    lab.set(**TRAINED, image=1, compare="example 1")
    cls = lab.state["class"]
    for s in (TRAINED, {"head": "random fc", "depth": "cut", "skip_gradient": "off",
                        "hook": "bn2"}):
        lab.set(**s)
        model = variant(lab.model, 0, s["depth"], s["head"], s["skip_gradient"])
        layer = layer_name(s["depth"], s["hook"])
        direct = cams.explain(model, sample[0][1:2], [layer], [cls])[layer]["gradcam"][0]
        assert torch.allclose(lab.current_map(), direct, atol=1e-5)


@pytest.mark.parametrize("factor", FACTORS)
def test_a_toggle_shows_the_new_setting_and_isolates_its_factor(lab, factor):
    lab.set(**TRAINED, compare="previous", image=0)
    before, shown = dict(lab.state), lab.current_image.value
    new = next(v for v in CHOICES[factor] if v != before[factor])
    lab.toggles[factor].value = new                                   # as a click does
    now = {f: lab.state[f] for f in FACTORS}
    assert now == {**{f: before[f] for f in FACTORS}, factor: new}
    assert lab.comparison == {f: before[f] for f in FACTORS}
    for e in lab.current_difference.values():
        assert e.changed == [factor] and e.clearer == now and e.other == lab.comparison
    size = tuple(lab.images.shape[-2:])
    expected = cams.upsample(lab.measured(now).maps[:1], size)[0]   # image 0, first class
    assert torch.equal(lab.current_map(), expected)
    if not torch.equal(lab.measured(now).maps, lab.measured(lab.comparison).maps):
        assert lab.current_image.value != shown
    assert lab.difference.value and f"changed: {factor}" in lab.difference.value


def test_skip_gradient_changes_nothing_inside_the_last_block(lab):
    """No skip connection carries gradient to a hook point inside the last block or to its
    output (the skip of that block adds the block's input), so the maps are the same: the
    difference is 0 with the interval [0, 0], and the lab says why."""
    for depth in ("full", "cut"):
        for hook in HOOKS:
            on = {**TRAINED, "depth": depth, "hook": hook}
            off = {**on, "skip_gradient": "off"}
            assert torch.equal(lab.measured(on).maps, lab.measured(off).maps)
            e = lab.effect(off, on, "energy")
            assert (e.difference, e.low, e.high) == (0.0, 0.0, 0.0)
    lab.set(**TRAINED, compare="previous")
    lab.set(skip_gradient="off")
    assert "does not reach this hook point" in lab.difference.value


def test_one_set_call_is_one_change(lab):
    lab.set(**TRAINED, compare="previous")
    lab.set(head="probe", hook="bn2")
    assert lab.comparison == TRAINED
    assert lab.current_difference["energy"].changed == ["head", "hook"]
    lab.set(compare="example 1")
    assert lab.comparison == EXAMPLE_1


def test_no_hook_left_and_modes_restored(lab, sample):
    assert hook_count(lab.model) == 0 and not lab.model.training
    model = weights.load_model("resnet18-shapes").train()
    measure_variant(model, sample[0][:2], sample[1][:2], sample[2][:2], ["layer4.1.conv2"])
    assert hook_count(model) == 0 and model.training


def test_snapshot_in_the_display_bundle(lab):
    lab.set(**TRAINED, compare="example 1")
    bundle = lab._repr_mimebundle_()
    assert {"image/png", "text/plain", "application/vnd.jupyter.widget-view+json"} <= set(bundle)
    img = lab.snapshot()
    assert img.width > 2 * lab.display_size and img.height > lab.display_size


@pytest.mark.parametrize("kwargs, words", [
    ({"n_images": 1}, "n_images"), ({"n_images": 2.5}, "n_images"), ({"seed": 7}, "seed"),
    ({"n_boot": 0}, "n_boot"), ({"display_size": 8}, "display_size"),
    ({"start": {"head": "fc"}}, "head"), ({"start": {"colour": "red"}}, "unknown factor"),
])
def test_bad_arguments_are_named(kwargs, words):
    with pytest.raises(ValueError, match=words):
        ClaimLab(**{"n_images": 2, "progress": False, **kwargs})


@pytest.mark.parametrize("kwargs, words", [
    ({"head": "random"}, "head: expected one of"), ({"hook": "relu"}, "hook"),
    ({"depth": "half"}, "depth"), ({"compare": "yesterday"}, "compare"),
    ({"image": N}, "image"), ({"target": "banana"}, "target"), ({"layer": "x"}, "unknown"),
])
def test_bad_toggles_are_named(lab, kwargs, words):
    with pytest.raises(ValueError, match=words):
        lab.set(**kwargs)
    with pytest.raises(ValueError, match="metric"):
        lab.effect(TRAINED, EXAMPLE_1, "pointing")
