"""The command line, in-process (``main([...])``): figures of the expected size, and one-line
errors with exit code 2 that name the problem and list the valid choices."""

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from pngs import header_png

from gradcam_edu.__main__ import main
from gradcam_edu.models import imagenet_weight_path

MODEL = ["--model", "random:resnet18_narrow"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def png_file(tmp_path):
    pic = np.zeros((180, 240, 3), dtype=np.uint8)
    pic[40:140, 60:160] = (250, 200, 0)
    path = tmp_path / "pic.png"
    Image.fromarray(pic).save(path)
    return path


def size_of(path) -> tuple[int, int]:
    with Image.open(path) as img:
        img.load()
        return img.size


def fails(capsys, argv, *expected):
    """Runs ``main(argv)``: exit code 2, one stderr line holding every ``expected`` text."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------- figures
def test_explain_writes_figure_of_expected_size(tmp_path, capsys):
    out = tmp_path / "out.png"
    assert main(["explain", "shapes:test:0", *MODEL, "--layer", "layer4.1", "--target", "ring",
                 "--method", "gradcam", "-o", str(out)]) == 0
    assert size_of(out) == (1200, 440)                      # 12 x 4.4 inches at 100 dpi
    said = capsys.readouterr().out
    assert "Grad-CAM at layer4.1 (7x7)" in said and "'ring'" in said


def test_explain_file_default_layer_target_index_dpi(tmp_path, png_file, capsys):
    out = tmp_path / "small.png"
    assert main(["explain", str(png_file), *MODEL, "--target", "2", "--method", "layercam",
                 "--dpi", "50", "-o", str(out)]) == 0
    assert size_of(out) == (600, 220)
    said = capsys.readouterr().out
    assert "at layer4 (7x7)" in said and "'triangle'" in said


def test_sweep_writes_layers_by_methods_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sweep", "shapes:test:0", *MODEL, "--layers", "layer3", "layer4",
                 "--methods", "gradcam", "hirescam", "--target", "circle", "-o", str(out)]) == 0
    # viz.plot_grid: cell 2.2 in, (methods + 1) columns + 1.0 in for the colour bar,
    # rows + 0.5 in for the title
    assert size_of(out) == (round((2.2 * 3 + 1.0) * 100), round((2.2 * 2 + 0.5) * 100))
    assert "2 layers x 2 methods" in capsys.readouterr().out


def test_sweep_default_rows_are_block_outputs(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sweep", "shapes:val:1", *MODEL, "--methods", "gradcam", "--dpi", "40",
                 "-o", str(out)]) == 0
    assert "8 layers x 1 methods" in capsys.readouterr().out
    assert size_of(out) == (round((2.2 * 2 + 1.0) * 40), round((2.2 * 8 + 0.5) * 40))


def test_imagenet_preprocessing_path_with_random_torchvision(tmp_path, png_file, capsys):
    out = tmp_path / "tv.png"
    assert main(["explain", str(png_file), "--model", "torchvision:resnet18", "--weights",
                 "random", "--layer", "layer4", "--dpi", "30", "-o", str(out)]) == 0
    assert size_of(out) == (360, 132)
    assert "softmax" in capsys.readouterr().out


# ----------------------------------------------------------------------------- errors
def test_bad_image_files(tmp_path, capsys):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"certainly not a PNG")
    fails(capsys, ["explain", str(junk), *MODEL], "junk.png", "not a readable image",
          "shapes:SPLIT:INDEX")
    fails(capsys, ["explain", str(tmp_path / "nothere.jpg"), *MODEL], "nothere.jpg",
          "does not exist")
    fails(capsys, ["explain", "shapes:tset:3", *MODEL], "shapes:tset:3", "train, val, test")
    fails(capsys, ["sweep", "shapes:test:x", *MODEL], "INDEX must be")


def test_unknown_layer_lists_close_matches(capsys):
    line = fails(capsys, ["explain", "shapes:test:0", *MODEL, "--layer", "layer4.2"],
                 "unknown layer 'layer4.2'", "did you mean", "layer4.1", "valid", "conv1")
    assert "Traceback" not in line
    fails(capsys, ["sweep", "shapes:test:0", *MODEL, "--layers", "layer3", "layr4"],
          "unknown layer 'layr4'", "layer4")
    # a module that runs twice per forward needs its call index
    fails(capsys, ["explain", "shapes:test:0", *MODEL, "--layer", "layer4.1.relu"],
          "layer4.1.relu#0", "layer4.1.relu#1")


def test_unknown_class_lists_names(capsys):
    fails(capsys, ["explain", "shapes:test:0", *MODEL, "--target", "rings"],
          "unknown class 'rings'", "did you mean ring", "circle, square, triangle")
    fails(capsys, ["explain", "shapes:test:0", *MODEL, "--target", "6"],
          "class index 6 out of range", "0 to 5", "circle")


def test_unknown_method_lists_methods(capsys):
    fails(capsys, ["explain", "shapes:test:0", *MODEL, "--method", "gradcam+"],
          "unknown method 'gradcam+'", "gradcam++", "hirescam", "layercam")
    fails(capsys, ["sweep", "shapes:test:0", *MODEL, "--methods", "gradcam", "scorecam"],
          "'scorecam' (Score-CAM, needs forwards) is not available here", "eigencam")


def test_unknown_model_lists_available(capsys):
    fails(capsys, ["explain", "shapes:test:0", "--model", "resnet18-shape"],
          "unknown model 'resnet18-shape'", "random:resnet18_narrow", "torchvision:resnet18")
    fails(capsys, ["explain", "shapes:test:0", "--model", "torchvision:vgg16"],
          "unknown torchvision model 'vgg16'", "resnet18, resnet34, resnet50")
    fails(capsys, ["explain", "shapes:test:0", *MODEL, "--weights", "imagenet"],
          "--weights applies to torchvision")


@pytest.mark.skipif(imagenet_weight_path("resnet18").is_file(),
                    reason="the ImageNet weights are in the local cache")
def test_absent_imagenet_weights_say_where(capsys):
    fails(capsys, ["explain", "shapes:test:0", "--model", "torchvision:resnet18"],
          "not found", "never", "--weights random")


def test_output_folder_missing(tmp_path, capsys):
    fails(capsys, ["explain", "shapes:test:0", *MODEL, "-o", str(tmp_path / "no" / "x.png")],
          "does not exist")


# ----------------------------------------------------------------------------- help, listings
def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("explain", "sweep", "models", "examples:", "shapes:SPLIT:INDEX"):
        assert word in text
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--layer" in text and "--target" in text and "top predicted" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["explain"])                                     # IMAGE missing: argparse
    assert exit_info.value.code == 2


def test_models_and_layers_listings(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "random:resnet18_narrow" in text and "torchvision:resnet18" in text
    assert main(["layers", *MODEL]) == 0
    text = capsys.readouterr().out
    assert "layer4.1.conv2" in text and "128x7x7" in text and "bn1" not in text


def test_module_entry_point_error_without_traceback(tmp_path):
    """One real process: ``python -m gradcam_edu`` exits 2 with a one-line message."""
    proc = subprocess.run(
        [sys.executable, "-m", "gradcam_edu", "explain", str(tmp_path / "none.png"), *MODEL],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("python -m gradcam_edu explain: error:")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_explain_png_is_a_real_figure(tmp_path):
    out = tmp_path / "fig.png"
    assert main(["explain", "shapes:test:0", *MODEL, "--dpi", "40", "-o", str(out)]) == 0
    arr = np.asarray(Image.open(io.BytesIO(out.read_bytes())).convert("RGB"))
    assert arr.std() > 10                                     # not a blank canvas


def test_imagenet_input_is_imagenet_preprocess(png_file):
    from gradcam_edu.cli import LoadedModel, load_cli_image
    from gradcam_edu.models import imagenet_preprocess

    x, described = load_cli_image(str(png_file), imagenet=True)
    assert x.shape == (3, 224, 224) and described == "pic.png"
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    loaded = LoadedModel(torch.nn.Identity(), "id", ["a"], imagenet=True)
    expected = imagenet_preprocess(Image.open(png_file))
    torch.testing.assert_close(loaded.model_input(x)[0], expected, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- bad input (issue 9)


def test_tiny_files_of_huge_images_and_bombs_are_one_line(tmp_path, capsys):
    strip, bomb = tmp_path / "strip.png", tmp_path / "bomb.png"
    strip.write_bytes(header_png(8000, 1))
    bomb.write_bytes(header_png(10000, 10000))
    fails(capsys, ["explain", str(strip), *MODEL], "strip.png", "a strip", "limit")
    fails(capsys, ["sweep", str(strip), "--model", "torchvision:resnet18", "--weights",
                   "random"], "strip.png", "a strip")
    fails(capsys, ["explain", str(bomb), *MODEL], "bomb.png", "100,000,000 pixels",
          "limit of 50,000,000")


def test_a_layer_without_a_grid_is_one_line(capsys):
    fails(capsys, ["explain", "shapes:test:0", *MODEL, "--layer", "fc"], "layer 'fc'",
          "not a feature map")
    fails(capsys, ["sweep", "shapes:test:0", *MODEL, "--layers", "layer4", "fc"],
          "layer 'fc'", "not a feature map")


@pytest.mark.parametrize("dpi", ["0", "-5", "100000", "9", "601"])
def test_absurd_dpi_is_one_line(capsys, dpi):
    fails(capsys, ["explain", "shapes:test:0", *MODEL, "--dpi", dpi],
          "--dpi must be between 10 and 600", f"got {dpi}")


def test_corrupt_imagenet_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = imagenet_weight_path("resnet18")
    assert str(path).startswith(str(tmp_path))
    path.parent.mkdir(parents=True)
    argv = ["explain", "shapes:test:0", "--model", "torchvision:resnet18", "--weights",
            "imagenet"]
    path.write_bytes(b"certainly not a checkpoint")
    fails(capsys, argv, "cannot be loaded", str(path), "corrupt", "--weights random")
    torch.save({"not": torch.zeros(1)}, path)                # a checkpoint, but not this one
    fails(capsys, argv, "cannot be loaded", "corrupt", "--weights random")


def test_broken_cards_are_one_line(tmp_path, monkeypatch, capsys):
    import json

    from gradcam_edu import weights
    from gradcam_edu.models import resnet18_narrow
    monkeypatch.setenv("GRADCAM_EDU_DATA", str(tmp_path))
    weights.save_model(resnet18_narrow(width=4), "tiny",
                       {"architecture": "resnet18_narrow", "kwargs": {"width": 4}})
    card_path, blob_path = tmp_path / "tiny.json", tmp_path / "tiny.safetensors"
    good = json.loads(card_path.read_text())
    argv = ["explain", "shapes:test:0", "--model", "tiny", "--dpi", "20",
            "-o", str(tmp_path / "t.png")]
    assert main(argv) == 0
    capsys.readouterr()
    for change, expected in (({"kwargs": {"width": "wide"}}, "cannot be loaded"),
                             ({"kwargs": {"colour": 3}}, "cannot be loaded"),
                             ({"classes": 5}, "classes is a int, not a list"),
                             ({"classes": ["a", "b"]}, "6 outputs, 2 class names")):
        card_path.write_text(json.dumps({**good, **change}))
        fails(capsys, argv, expected)
    card_path.write_text(json.dumps({**good, "held_out": {"exact_match": "high"}}))
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "tiny" in listing and "card unreadable" in listing
    blob_path.write_bytes(b"not tensors")                    # bytes that match their card
    card_path.write_text(json.dumps({**good, "sha256": weights.sha256_file(blob_path)}))
    fails(capsys, argv, "model 'tiny' cannot be loaded")


def test_output_path_printed_is_the_one_written(tmp_path, capsys):
    out = tmp_path / "figure"
    assert main(["explain", "shapes:test:0", *MODEL, "--dpi", "20", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert (tmp_path / "figure.png").is_file() and not out.exists()
    assert said.startswith(f"wrote {tmp_path / 'figure.png'}:")
    fails(capsys, ["explain", "shapes:test:0", *MODEL, "-o", str(tmp_path / "f.xyz")],
          "unknown image format '.xyz'", ".png", ".svg")
    fails(capsys, ["explain", "shapes:test:0", *MODEL, "-o", ""], "give a file name")


# ----------------------------------------------------------------------------- fetch (no network)
@pytest.fixture
def offline(monkeypatch):
    """Any connection attempt fails the test: these fetch commands must not reach a server."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_fetch_unknown_architecture_lists_the_known_ones(capsys, offline):
    fails(capsys, ["fetch", "vgg16"], "fetch: error: unknown architecture 'vgg16'",
          "valid: resnet18, resnet34, resnet50")
    fails(capsys, ["fetch", "resnet18", "resnet5"], "unknown architecture 'resnet5'",
          "did you mean resnet50")
    for bad in ("0", "-3", "nan"):
        fails(capsys, ["fetch", "resnet18", "--timeout", bad], "--timeout must be", "> 0")


def test_fetch_refuses_a_foreign_file_in_the_cache(tmp_path, monkeypatch, capsys, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = imagenet_weight_path("resnet34")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"certainly not torchvision's checkpoint")
    fails(capsys, ["fetch", "resnet34"], "resnet34:", str(path), "already in the cache",
          "delete it and fetch again")


def test_fetch_is_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["fetch", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "ARCH" in text and "resnet18, resnet34, resnet50" in text and "--timeout" in text
    assert "torch.hub.get_dir()/checkpoints" in text
