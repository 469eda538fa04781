"""Images: files and modes, conversions, fitting, ImageNet preprocessing, encoding; values
worked out by hand."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from gradcam_edu import images, models


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def rgb(img: Image.Image) -> list:
    return np.asarray(images.to_rgb(img)).tolist()


# ----------------------------------------------------------------------------- conversions
def test_to_tensor_of_a_known_array_and_back():
    arr = np.array([[[0, 51, 255], [102, 204, 153]]], dtype=np.uint8)     # (H=1, W=2, 3)
    x = images.to_tensor(arr)
    assert x.shape == (3, 1, 2) and x.dtype == torch.float32 and x.is_contiguous()
    expected = torch.tensor([[[0.0, 0.4]], [[0.2, 0.8]], [[1.0, 0.6]]])
    torch.testing.assert_close(x, expected)
    batch = images.to_tensor(np.stack([arr, 255 - arr]))                  # (N, H, W, 3)
    assert batch.shape == (2, 3, 1, 2)
    torch.testing.assert_close(batch[1], 1.0 - expected)
    assert np.array_equal(images.to_uint8(x), arr)
    assert np.array_equal(images.to_uint8(batch), np.stack([arr, 255 - arr]))
    assert images.to_tensor(np.asarray(Image.fromarray(arr))).shape == (3, 1, 2)  # read-only
    with pytest.raises(ValueError, match=r"arr: expected uint8 \(H, W, 3\)"):
        images.to_tensor(arr.astype(np.float32))


def test_to_uint8_clamps_and_rounds():
    x = torch.tensor([[[-0.5, 0.6 / 255, 1.4 / 255, 2.0]]]).expand(3, 1, 4)
    assert images.to_uint8(x)[0, :, 0].tolist() == [0, 1, 1, 255]


def test_as_image_tensor_of_every_kind():
    arr = (np.arange(2 * 4 * 3) * 10).astype(np.uint8).reshape(2, 4, 3)
    ref = images.to_tensor(arr)[:, :, 1:3]                 # the centre 2 x 2 of a 2 x 4 image
    for item in (arr, Image.fromarray(arr), (torch.from_numpy(arr).permute(2, 0, 1), 3),
                 images.to_tensor(arr), images.to_tensor(arr)[None]):
        torch.testing.assert_close(images.as_image_tensor(item, 2), ref)
    grey = images.as_image_tensor(np.full((2, 2), 0.25, dtype=np.float32), 2)
    assert grey.shape == (3, 2, 2) and float(grey.min()) == float(grey.max()) == 0.25
    with pytest.raises(TypeError, match="images: expected tensors"):
        images.as_image_tensor("cat.png", 2)


# ----------------------------------------------------------------------------- modes
def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "depth.png"
    Image.fromarray(np.array([[0, 257, 32896, 65535]], dtype=np.uint16)).save(path)
    with Image.open(path) as img:
        assert img.mode == "I;16"
    pixels = np.asarray(images.open_image_file(path))
    # v / 257: 0 -> 0, 257 -> 1, 32896 -> 128, 65535 -> 255, the same on R, G and B
    assert pixels.tolist() == [[[v, v, v] for v in (0, 1, 128, 255)]]
    assert rgb(Image.fromarray(np.array([[65535, 514]], dtype=np.int32), "I")) == \
        [[[255] * 3, [2] * 3]]


def test_palette_and_transparency():
    pal = Image.new("P", (3, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    pal.putdata([2, 0, 1])
    assert rgb(Image.open(io.BytesIO(png_bytes(pal)))) == [[[0, 0, 255], [255, 0, 0],
                                                          [0, 255, 0]]]
    pal.info["transparency"] = 0                         # index 0 (red) is transparent
    assert rgb(Image.open(io.BytesIO(png_bytes(pal)))) == [[[0, 0, 255], [255, 255, 255],
                                                          [0, 255, 0]]]


def test_alpha_is_composited_over_white():
    rgba = Image.fromarray(np.array([[[255, 0, 0, 128], [0, 0, 255, 255], [10, 20, 30, 0]]],
                                    dtype=np.uint8), "RGBA")
    # half-transparent red over white: 255 * 127 / 255 = 127 on G and B; opaque stays; clear
    assert rgb(rgba) == [[[255, 127, 127], [0, 0, 255], [255, 255, 255]]]
    la = Image.fromarray(np.array([[[0, 0], [100, 255]]], dtype=np.uint8), "LA")
    assert rgb(la) == [[[255, 255, 255], [100, 100, 100]]]


def test_greyscale_binary_and_cmyk():
    assert rgb(Image.fromarray(np.array([[0, 77]], dtype=np.uint8))) == [[[0] * 3, [77] * 3]]
    assert rgb(Image.new("1", (1, 1), 1)) == [[[255, 255, 255]]]
    cmyk = Image.frombytes("CMYK", (3, 1), bytes([0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255]))
    assert rgb(cmyk) == [[[255, 255, 255], [0, 255, 255], [0, 0, 0]]]   # white, cyan, black
    path = io.BytesIO(png_bytes(cmyk, "TIFF"))
    assert np.asarray(images._read(path, "cmyk.tif")).tolist() == rgb(cmyk)


# ----------------------------------------------------------------------------- fitting
def test_a_two_by_four_image_fitted_to_two_is_its_centre():
    arr = np.zeros((2, 4, 3), dtype=np.uint8)
    arr[..., 0] = [[10, 20, 30, 40], [50, 60, 70, 80]]      # red: its column and row
    x = images.fit_image(Image.fromarray(arr), 2)
    assert (images.to_uint8(x)[..., 0]).tolist() == [[20, 30], [60, 70]]   # columns 1 and 2
    torch.testing.assert_close(images.fit_tensor(images.to_tensor(arr), 2), x)
    tall = images.fit_tensor(images.to_tensor(arr.transpose(1, 0, 2).copy()), 2)
    assert (images.to_uint8(tall)[..., 0]).tolist() == [[20, 60], [30, 70]]  # rows 1 and 2


def test_fitting_resizes_the_short_side_then_crops():
    flat = Image.new("RGB", (90, 60), (40, 80, 120))        # 90 x 60 -> 48 x 32 -> 32 x 32
    x = images.fit_image(flat, 32)
    assert x.shape == (3, 32, 32)
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([40, 80, 120]) / 255.0)
    assert float(x.std(dim=(1, 2)).max()) == 0.0            # a flat image stays flat
    grey = images.fit_tensor(torch.full((1, 10, 30), 0.5), 5)
    assert grey.shape == (3, 5, 5) and torch.allclose(grey, torch.tensor(0.5))
    same = torch.rand(3, 8, 8)
    assert images.fit_tensor(same, 8) is not None and torch.equal(images.fit_tensor(same, 8),
                                                                   same)
    # the same as torchvision's own resize + centre crop, which the course teaches
    photo = Image.fromarray((np.random.default_rng(0).random((75, 101, 3)) * 255)
                            .astype(np.uint8))
    tv = transforms.functional
    expected = tv.to_tensor(tv.center_crop(tv.resize(photo, 64), [64, 64]))
    torch.testing.assert_close(images.fit_image(photo, 64), expected)
    with pytest.raises(ValueError, match="size: expected a positive int"):
        images.fit_image(photo, 0)
    with pytest.raises(ValueError, match=r"image: expected a \(3, H, W\) tensor"):
        images.fit_tensor(torch.rand(2, 3, 8, 8), 4)


# ----------------------------------------------------------------------------- files
def test_missing_empty_truncated_and_not_an_image(tmp_path):
    good = png_bytes(Image.fromarray((np.random.default_rng(1).random((40, 40, 3)) * 255)
                                     .astype(np.uint8)))
    cases = {"missing.png": None, "empty.png": b"", "half.png": good[:len(good) // 2],
             "notes.png": b"just some text, not pixels"}
    expected = {"missing.png": "does not exist", "empty.png": r"is empty \(0 bytes\)",
                "half.png": "is not a readable image", "notes.png": "is not a readable image"}
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(ValueError, match=expected[name]) as err:
            images.load_image_file(path, 32)
        message = str(err.value)
        assert "\n" not in message and name in message, message
        if data is not None:
            with pytest.raises(ValueError, match=f"'{name}' " + expected[name]):
                images.decode_image(data, 32, name=repr(name))
    with pytest.raises(ValueError, match="is not a file"):
        images.open_image_file(tmp_path)
    (tmp_path / "ok.png").write_bytes(good)
    assert images.load_image_file(tmp_path / "ok.png", 16).shape == (3, 16, 16)
    assert images.decode_image(good, 16).shape == (3, 16, 16)
    with pytest.raises(TypeError, match="data: expected the file's bytes"):
        images.decode_image("ok.png", 16)


# ----------------------------------------------------------------------------- ImageNet
def test_normalize_and_denormalize():
    mean = torch.tensor(images.IMAGENET_MEAN)[:, None, None].expand(3, 2, 2)
    assert torch.equal(images.imagenet_normalize(mean), torch.zeros(3, 2, 2))
    one = images.imagenet_normalize(torch.ones(1, 3, 1, 1))[0, :, 0, 0]
    torch.testing.assert_close(one, torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224,
                                                  (1 - 0.406) / 0.225]))
    x = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(images.imagenet_denormalize(images.imagenet_normalize(x)), x)
    with pytest.raises(ValueError, match="x: expected images"):
        images.imagenet_normalize(torch.rand(4, 5, 5))


def test_imagenet_preprocess_is_torchvision_pipeline_and_crop_is_its_display():
    photo = Image.fromarray((np.random.default_rng(2).random((300, 400, 3)) * 255)
                            .astype(np.uint8))
    reference = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize(images.IMAGENET_MEAN, images.IMAGENET_STD)])(photo)
    assert torch.equal(images.imagenet_preprocess(photo), reference)
    crop = images.imagenet_crop(photo)
    assert crop.shape == (3, 224, 224) and 0.0 <= float(crop.min()) <= float(crop.max()) <= 1
    assert torch.equal(images.imagenet_normalize(crop), reference)
    assert models.imagenet_preprocess is images.imagenet_preprocess
    assert models.IMAGENET_MEAN == images.IMAGENET_MEAN == (0.485, 0.456, 0.406)


# ----------------------------------------------------------------------------- encoding
def test_encode_png_round_trip_and_jpeg():
    arr = (np.random.default_rng(0).random((7, 5, 3)) * 255).astype(np.uint8)
    png = images.encode(arr)
    assert png[:4] == b"\x89PNG"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), arr)
    assert images.encode(Image.fromarray(arr), "png") == png
    jpeg = images.encode(np.full((16, 16, 3), 200, dtype=np.uint8), "jpeg")
    assert jpeg[:2] == b"\xff\xd8"
    assert np.abs(np.asarray(Image.open(io.BytesIO(jpeg))).astype(int) - 200).max() <= 1
    with pytest.raises(ValueError, match="fmt: expected 'png' or 'jpeg'"):
        images.encode(arr, "gif")
    with pytest.raises(ValueError, match=r"img: expected uint8 \(H, W, 3\)"):
        images.encode(arr[..., 0])


# ----------------------------------------------------------------------------- bounds
def test_bounds_are_inclusive_and_checked_from_the_header(tmp_path):
    """At the bounds an image is read; one pixel over, it is refused naming the limit (and
    PIL's own decompression-bomb warning becomes the same one-line error)."""
    edge = Image.new("RGB", (images.MAX_ASPECT, 1))
    assert images.fit_image(edge, 8).shape == (3, 8, 8)
    with pytest.raises(images.ImageTooLargeError, match=f"over {images.MAX_ASPECT} times"):
        images.fit_image(Image.new("RGB", (images.MAX_ASPECT + 1, 1)), 8)
    images.check_pixels(images.MAX_PIXELS, 1)
    with pytest.raises(images.ImageTooLargeError, match="limit of 50,000,000"):
        images.check_pixels(images.MAX_PIXELS + 1, 1, "'big.png'")
    images.check_plan(4000, 4000, 4000)                    # 16,000,000 pixels: the limit
    with pytest.raises(images.ImageTooLargeError, match="use a smaller size"):
        images.check_plan(4000, 4000, 4001)
    path = tmp_path / "pic.png"
    Image.new("RGB", (30, 20), (1, 2, 3)).save(path)
    assert isinstance(images.ImageTooLargeError("x"), ValueError)   # callers catch ValueError
    before = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 100                       # PIL warns above 100, errs above 200
        with pytest.raises(images.ImageTooLargeError, match="pic.png' has 600 pixels, more "
                                                            "than the limit of 100"):
            images.open_image_file(path)
    finally:
        Image.MAX_IMAGE_PIXELS = before
    assert images.open_image_file(path).size == (30, 20)
