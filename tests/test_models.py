"""The course's models: torchvision names, grid sizes, seeded and offline torchvision ResNets."""

from __future__ import annotations

import socket

import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from gradcam_edu import models


def _output_shapes(model: nn.Module, names: list[str], size: int = 224) -> dict:
    shapes, handles = {}, []
    mods = dict(model.named_modules())
    for n in names:
        handles.append(
            mods[n].register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, o.shape))
        )
    try:
        with torch.no_grad():
            model.eval()(torch.rand(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    return shapes


def test_resnet18_narrow_has_torchvision_names_and_keys():
    ours, ref = models.resnet18_narrow(), torchvision.models.resnet18()
    assert isinstance(ours, torchvision.models.ResNet)
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in ref.named_modules()]
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert type(ours.layer4[1]) is torchvision.models.resnet.BasicBlock
    assert ours.layer4[0].downsample is not None


def test_resnet18_narrow_widths_and_grids():
    m = models.resnet18_narrow(num_classes=6, width=16)
    s = _output_shapes(m, ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"])
    assert s["conv1"] == (1, 16, 112, 112)
    assert s["layer1"] == (1, 16, 56, 56)
    assert s["layer2"] == (1, 32, 28, 28)
    assert s["layer3"] == (1, 64, 14, 14)
    assert s["layer4"] == (1, 128, 7, 7)
    assert s["fc"] == (1, 6)


def test_plain_cnn_last_conv_is_14x14_and_has_no_skips():
    m = models.plain_cnn(num_classes=6)
    convs = [n for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d)]
    assert convs[-1] == "features.block4.conv2"
    s = _output_shapes(m, [convs[-1], "fc"])
    assert s[convs[-1]][-2:] == (14, 14)
    assert s["fc"] == (1, 6)
    # a plain chain: every ReLU is its own module, none in place (hooks fire once per name)
    relus = [mod for mod in m.modules() if isinstance(mod, nn.ReLU)]
    assert len(relus) == len(convs) and not any(r.inplace for r in relus)


def test_torchvision_resnet_random_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = models.torchvision_resnet("resnet18", weights="random", seed=0)
    after = torch.rand(3)
    assert torch.equal(before, after)
    b = models.torchvision_resnet("resnet18", weights="random", seed=0)
    c = models.torchvision_resnet("resnet18", weights="random", seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv1.weight"], sc["conv1.weight"])
    assert not a.training


@pytest.fixture()
def empty_hub(tmp_path, monkeypatch):
    """An empty torch hub dir, and no way to reach the network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(*args, **kwargs):
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    return tmp_path / "hub"


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_imagenet_weights_absent_raise_with_the_path(empty_hub, arch):
    expected = models.imagenet_weight_path(arch)
    assert expected.parent == empty_hub / "checkpoints"
    with pytest.raises(FileNotFoundError) as err:
        models.torchvision_resnet(arch, weights="imagenet")
    assert str(expected) in str(err.value)


def test_imagenet_weights_present_are_loaded_from_the_cache(empty_hub):
    path = models.imagenet_weight_path("resnet18")
    path.parent.mkdir(parents=True)
    fake = models.torchvision_resnet("resnet18", weights="random", seed=7).state_dict()
    torch.save(fake, path)
    loaded = models.torchvision_resnet("resnet18", weights="imagenet").state_dict()
    assert all(torch.equal(fake[k], loaded[k]) for k in fake)
    assert path.name == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]


def test_bad_arguments():
    with pytest.raises(ValueError):
        models.torchvision_resnet("resnet101")
    with pytest.raises(ValueError):
        models.torchvision_resnet("resnet18", weights="pretrained")


def test_imagenet_preprocess():
    img = Image.new("RGB", (400, 300), (124, 116, 104))  # about the ImageNet mean colour
    x = models.imagenet_preprocess(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert x.abs().max() < 0.05
