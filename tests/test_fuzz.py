"""Fuzzing the public API, the CLI and the explorer with seeded random inputs (no hypothesis:
numpy's and torch's generators, fixed seeds, a few hundred small cases).

Every case must end in a valid result or in a clear error of an expected type whose message
names the argument (``target:``, ``A:``, ``x:``, the file...), never in a traceback from deep
inside torch or PIL; and it must leave no hook behind and the model's mode as it was. A
failing case prints its seed and description, so it can be replayed alone.
"""

import datetime
import functools
import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from pngs import header_png
from torch import nn

from gradcam_edu import cams, images
from gradcam_edu.__main__ import main
from gradcam_edu.capture import capture, hook_count
from gradcam_edu.explorer import Explorer
from gradcam_edu.models import resnet18_narrow
from gradcam_edu.targets import target_scores

pytestmark = pytest.mark.usefixtures("one_thread")

CLEAR = (TypeError, ValueError, IndexError)


# ----------------------------------------------------------------------------- targets
def random_target(rng: np.random.Generator, n: int, c: int):
    """(target, expected classes or None for "must be refused", callable's shape or None)."""
    kind = rng.integers(12)
    k = int(rng.integers(-1, c + 1))
    length = n if rng.random() < 0.6 else int(rng.integers(0, n + 3))
    classes = rng.integers(-1, c + 1, size=length)
    ok = bool(((classes >= 0) & (classes < c)).all()) and length == n
    if kind == 0:
        return k, ([k] * n if 0 <= k < c else None)
    if kind == 1:
        dtype = rng.choice([np.int8, np.int16, np.int32, np.int64, np.uint8])
        value = dtype(max(k, 0))
        return value, [int(value)] * n if int(value) < c else None
    if kind == 2:
        return rng.choice([float(k), np.float64(k), np.float32(k), k + 0.5]), None
    if kind == 3:
        return rng.choice([True, False, np.bool_(True)]), None
    if kind == 4:
        return [int(v) for v in classes], (list(classes) if ok else None)
    if kind == 5:
        return [float(v) for v in classes] or [0.5], None
    if kind == 6:
        dtype = rng.choice([np.int32, np.int64, np.uint8])
        arr = classes.clip(0, None).astype(dtype)
        good = length == n and bool((arr < c).all())
        return arr, (arr.tolist() if good else None)
    if kind == 7:
        return rng.random(max(length, 1)) * c, None                          # float array
    if kind == 8:
        return rng.random(max(length, 1)) < 0.5, None                        # bool array
    if kind == 9:
        dtype = [torch.long, torch.int32, torch.float32, torch.bool, torch.float16][
            int(rng.integers(5))]
        t = torch.as_tensor(classes.clip(0, None)).to(dtype)
        if rng.random() < 0.3:
            t = t[:1].reshape(()) if len(t) else torch.tensor(1, dtype=dtype)
        integer = not (t.is_floating_point() or t.dtype == torch.bool)
        good = integer and bool((t < c).all()) and (t.ndim == 0 or t.numel() == n)
        return t, ([int(t)] * n if t.ndim == 0 else t.tolist()) if good else None
    if kind == 10:
        shape = [(n,), (n, c), (n + 1,), (), (1,), (n, 1)][int(rng.integers(6))]
        good = shape == (n,) or (shape in ((), (1,)) and n == 1)
        return (lambda z, shape=shape: z.reshape(-1)[:1].reshape(()).expand(shape) * 1.0
                + z.sum() * 0), (shape if good else None)
    return rng.choice(["cat", None, {"a": 1}, b"3", 3 + 0j], 1)[0], None


def test_fuzz_targets():
    rng = np.random.default_rng(0)
    accepted = 0
    for case in range(400):
        n, c = int(rng.integers(1, 5)), int(rng.integers(1, 6))
        logits = torch.randn(n, c, generator=torch.Generator().manual_seed(case))
        target, expected = random_target(rng, n, c)
        where = f"case {case}: target {target!r} for N={n}, C={c}"
        try:
            scores = target_scores(logits, target)
        except CLEAR as err:
            assert expected is None, f"{where} refused: {err}"
            assert str(err).startswith("target:") and "\n" not in str(err), (where, err)
            continue
        assert expected is not None, f"{where} accepted: {scores}"
        assert scores.shape == (n,), where
        if not callable(target):
            assert torch.equal(scores, logits[torch.arange(n), torch.tensor(expected)]), where
        accepted += 1
    assert 50 <= accepted <= 350, accepted                    # both outcomes were tried


# ----------------------------------------------------------------------------- CAM shapes
def random_shape(rng: np.random.Generator) -> list[int]:
    return [int(v) for v in rng.integers(1, 5, size=int(rng.choice([2, 3, 4, 4, 4, 5])))]


def test_fuzz_cam_shapes():
    rng = np.random.default_rng(1)
    names = list(cams.GRADIENT_METHODS)
    for case in range(300):
        a_shape = random_shape(rng)
        g_shape = list(a_shape)
        if rng.random() < 0.5:
            if rng.random() < 0.7 and g_shape:
                g_shape[int(rng.integers(len(g_shape)))] += int(rng.integers(1, 3))
            else:
                g_shape = random_shape(rng)
        A, G = torch.rand(a_shape), torch.randn(g_shape)
        name = names[case % len(names)]
        where = f"case {case}: {name} A {tuple(a_shape)} G {tuple(g_shape)}"
        valid = len(a_shape) == 4 and g_shape == a_shape
        for fn in (cams.GRADIENT_METHODS[name], functools.partial(cams.raw_map, name)):
            try:
                raw = fn(A, G)
            except ValueError as err:
                assert not valid, f"{where} refused: {err}"
                assert str(err)[:2] in ("A:", "G:"), (where, err)
                continue
            assert valid, f"{where} accepted: {tuple(raw.shape)}"
            n, _, h, w = a_shape
            assert raw.shape == (n, h, w) and torch.isfinite(raw).all(), where


def test_fuzz_finalize():
    rng = np.random.default_rng(2)
    for case in range(200):
        raw = torch.randn(random_shape(rng))
        size = [None, (int(rng.integers(1, 9)), int(rng.integers(1, 9))), int(rng.integers(1, 9)),
                (0, 4), (4,), (2.5, 3), "big", (True, 2)][int(rng.integers(8))]
        good_size = size is None or (isinstance(size, int) and size > 0) or (
            isinstance(size, tuple) and len(size) == 2
            and all(type(v) is int and v > 0 for v in size))
        where = f"case {case}: raw {tuple(raw.shape)} size {size!r}"
        try:
            out = cams.finalize(raw, size)
        except (ValueError, TypeError) as err:
            assert raw.ndim != 3 or not good_size, f"{where} refused: {err}"
            assert str(err)[:4] in ("raw:", "size"), (where, err)
            continue
        assert raw.ndim == 3 and good_size, f"{where} accepted: {tuple(out.shape)}"
        hw = raw.shape[1:] if size is None else (size, size) if isinstance(size, int) else size
        assert out.shape == (raw.shape[0], *hw) and float(out.min()) >= 0, where
        assert float(out.max()) <= 1 and torch.isfinite(out).all(), where


# ----------------------------------------------------------------------------- model inputs
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = self.conv2(torch.relu(self.bn(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


def pick(rng: np.random.Generator, usual, *others, p: float = 0.7):
    """``usual`` with probability ``p``, else one of ``others``."""
    return usual if rng.random() < p or not others else others[int(rng.integers(len(others)))]


def random_images(rng: np.random.Generator) -> tuple[torch.Tensor, str]:
    ndim = pick(rng, 4, 2, 3, 5, p=0.8)
    shape = [int(rng.integers(1, 4)), pick(rng, 3, 1, 4, 8), int(rng.integers(1, 9)),
             int(rng.integers(1, 9)), 2][:ndim]
    dtype = pick(rng, torch.float32, torch.float64, torch.float16, torch.bfloat16,
                 torch.uint8, torch.int64, torch.bool, p=0.75)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(int(rng.integers(1000))))
    poison = pick(rng, None, float("nan"), float("inf"), -float("inf"), "overflow", "overflow",
                  p=0.5)
    if poison == "overflow":
        x = x * 3e38                                      # finite, but the convs overflow
    elif poison is not None and x.numel():
        x.view(-1)[int(rng.integers(x.numel()))] = poison
    return x.to(dtype), f"shape {tuple(shape)} {dtype} poison {poison}"


def test_fuzz_model_inputs():
    rng = np.random.default_rng(3)
    torch.manual_seed(0)
    model = Tiny().train()
    outcomes = []
    for case in range(120):
        x, what = random_images(rng)
        layers = [["conv1"], ["conv2", "bn"], ["conv1", "conv2"]][case % 3]
        where = f"case {case}: {what}"
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            try:
                with capture(model, layers) as cap:
                    logits = cap.forward(x)
                    cap.backward(int(rng.integers(3)))
            except CLEAR as err:
                assert str(err).startswith("x:") and "\n" not in str(err), (where, err)
                logits = None
        assert hook_count(model) == 0 and all(m.training for m in model.modules()), where
        outcomes.append("refused" if logits is None else "warned" if said else "ran")
        if logits is None:
            continue
        assert x.dtype == torch.float32 and x.ndim == 4 and x.shape[1] == 3, where
        assert bool(torch.isfinite(x).all()), f"{where}: a non-finite input was accepted"
        finite = bool(torch.isfinite(logits).all()) and all(
            bool(torch.isfinite(g).all()) for g in cap.gradients.values())
        assert finite or any("non-finite" in str(w.message) for w in said), where
    counts = {k: outcomes.count(k) for k in ("refused", "warned", "ran")}
    assert counts["refused"] >= 10 and counts["ran"] >= 10 and counts["warned"] >= 2, counts


# ----------------------------------------------------------------------------- image bytes


def random_file(rng: np.random.Generator) -> tuple[bytes, bool]:
    """Image file bytes and whether they must be refused as too large (before decoding)."""
    kind = int(rng.integers(6))
    if kind == 0:                                    # a header claiming a huge or odd size
        w, h = (int(v) for v in 10 ** rng.uniform(0, 5, size=2))
        huge = w * h > images.MAX_PIXELS or max(w, h) > images.MAX_ASPECT * min(w, h)
        return (header_png(w, h), True) if huge else (header_png(min(w, 64), min(h, 64)),
                                                      max(w, h) > 32 * min(w, h))
    w, h = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    mode = ["RGB", "L", "RGBA", "P", "I;16", "1"][int(rng.integers(6))]
    pic = Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).convert(
        "RGB" if mode == "I;16" else mode)
    if mode == "I;16":
        pic = Image.fromarray((rng.random((h, w)) * 65535).astype(np.uint16))
    fmt = "PNG" if mode in ("RGBA", "I;16", "1") else ["PNG", "JPEG", "GIF", "BMP", "TIFF"][
        int(rng.integers(5))]
    buf = io.BytesIO()
    pic.convert("RGB").save(buf, format=fmt) if fmt == "JPEG" else pic.save(buf, format=fmt)
    data = bytearray(buf.getvalue())
    strip = max(w, h) > images.MAX_ASPECT * min(w, h)
    if kind == 2 and len(data) > 1:                  # truncated
        return bytes(data[:int(rng.integers(len(data)))]), False
    if kind == 3:                                    # a few bytes flipped
        for i in rng.integers(len(data), size=int(rng.integers(1, 6))):
            data[i] = int(rng.integers(256))
        return bytes(data), False
    if kind == 4:                                    # noise
        return bytes(rng.integers(256, size=int(rng.integers(0, 200)), dtype=np.uint8)), False
    return bytes(data), strip


def test_fuzz_image_bytes():
    rng = np.random.default_rng(4)
    for case in range(250):
        data, too_large = random_file(rng)
        size = int(rng.integers(1, 48))
        where = f"case {case}: {len(data)} bytes {data[:24]!r}..., size {size}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)          # PIL on corrupt TIFF tags
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                x = images.decode_image(data, size, name="'fuzz.png'")
            except ValueError as err:
                message = str(err)
                assert "'fuzz.png'" in message and "\n" not in message, (where, message)
                if too_large:
                    assert isinstance(err, images.ImageTooLargeError), (where, message)
                continue
        assert not too_large, f"{where}: too large, but decoded"
        assert x.shape == (3, size, size) and x.dtype == torch.float32, where
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0, where


# ----------------------------------------------------------------------------- command line
def test_fuzz_cli(tmp_path, capsys):
    rng = np.random.default_rng(5)
    names = ["conv1", "bn1", "maxpool", "layer1", "layer1.0.relu", "layer4.1.relu#1",
             "layer4.1.relu#7", "layer3.0.downsample", "layer4", "avgpool", "fc", "layr4", "#"]
    methods = ["gradcam", "hirescam", "gradcam++", "xgradcam", "layercam", "eigencam", "cam",
               "gradcam+"]
    codes = []
    for case in range(12):
        out = tmp_path / f"f{case}{pick(rng, '.png', '', '.xyz', '.svg', '.JPG', p=0.5)}"
        argv = ["explain", f"shapes:test:{int(rng.integers(5))}", "--model",
                "random:resnet18_narrow", "--layer", str(rng.choice(names)), "--method",
                str(rng.choice(methods)), "--target",
                pick(rng, "ring", "Ring", "rings", "-1", "5", "6", "", "0", p=0.5),
                "--dpi", pick(rng, "10", "0", "-5", "100000", "601", p=0.8),
                "--alpha", pick(rng, "0.5", "-0.1", "1.5", "nan", p=0.8), "-o", str(out)]
        codes.append(code := main(argv))
        said = capsys.readouterr()
        where = f"case {case}: {' '.join(argv)}"
        assert code in (0, 2), where
        if code == 2:
            lines = said.err.strip().splitlines()
            assert len(lines) == 1 and "error:" in lines[0], (where, said.err)
            continue
        written = said.out.split(":")[0].removeprefix("wrote ")
        assert written.endswith((".png", ".svg", ".JPG")), (where, said.out)
        assert (tmp_path / written.rsplit("/", 1)[-1]).is_file(), (where, said.out)
    assert codes.count(0) >= 2 and codes.count(2) >= 2, codes      # both paths were taken


# ----------------------------------------------------------------------------- explorer
def upload_entry(name: str, content: bytes) -> dict:
    return {"name": name, "type": "image/png", "size": len(content),
            "content": memoryview(content),
            "last_modified": datetime.datetime.now(datetime.UTC)}


def test_fuzz_explorer():
    rng = np.random.default_rng(6)
    torch.manual_seed(0)
    model = resnet18_narrow(width=8).train()
    gen = torch.Generator().manual_seed(7)
    pics = [torch.rand(3, 32, 32, generator=gen) for _ in range(4)]
    pics.append(pics[0].clone().index_fill_(1, torch.tensor([3]), float("nan")))   # bad
    pics.append(torch.rand(3, 1, 500, generator=gen))                            # a strip
    pics.append(pics[1] * float("inf"))                                          # bad
    ex = Explorer(model, pics, [f"c{k}" for k in range(6)], image_size=32, display_size=32)
    bad = {4, 5, 6}
    tried = {"bad image": 0, "upload kept": 0, "upload refused": 0}
    for step in range(60):
        action = int(rng.integers(6))
        shown = ex.session.index
        where = f"step {step}: action {action}"
        if action == 0:
            index = int(rng.integers(len(ex.images)))
            ex.image_slider.value = index
            expect = shown if index in bad else index
            assert ex.session.index == expect, where
            if index in bad and index != shown:
                assert "cannot be shown" in ex.message.value, where
                tried["bad image"] += 1
        elif action == 1:
            ex.class_dropdown.value = int(rng.integers(6))
        elif action == 2:
            ex.layer_slider.value = int(rng.integers(len(ex.layers)))
        elif action == 3:
            ex.method_dropdown.value = ex.methods[int(rng.integers(len(ex.methods)))]
        elif action == 4:
            ex.alpha_slider.value = float(rng.random())
        else:
            data, _ = random_file(rng)
            before = len(ex.images)
            ex.upload.value = (upload_entry("fuzz.png", data),)
            grew = len(ex.images) - before
            assert grew in (0, 1) and ex.upload.value == (), where
            assert ex.session.index == (before if grew else shown), where
            assert "fuzz.png" in ex.message.value, where
            tried["upload kept" if grew else "upload refused"] += 1
        assert ex.image_slider.value == ex.session.index == ex.state["image"], where
        assert ex.image_slider.max == len(ex.images) - 1, where
        assert all(0 <= i < len(ex.images) and i not in bad for i, _ in ex.session._grads), where
        heat = ex.current_map
        assert heat is None or (heat.shape == (32, 32) and torch.isfinite(heat).all()), where
        assert hook_count(model) == 0 and all(m.training for m in model.modules()), where
    assert min(tried.values()) >= 2, tried
