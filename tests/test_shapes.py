"""The procedurally generated shapes: determinism, ground truth, dataset items."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcam_edu import shapes
from gradcam_edu.shapes import IMAGE_SIZE, NUM_CLASSES, ShapesDataset, render


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADCAM_EDU_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_constants():
    assert shapes.CLASS_NAMES == ("circle", "square", "triangle", "star", "cross", "ring")
    assert NUM_CLASSES == 6 and IMAGE_SIZE == 224


def test_same_triple_same_bytes_in_any_order():
    forward = [render(0, "train", i) for i in range(4)]
    backward = [render(0, "train", i) for i in reversed(range(4))][::-1]
    for a, b in zip(forward, backward, strict=True):
        assert a.image.tobytes() == b.image.tobytes()
        assert a.masks.tobytes() == b.masks.tobytes()
        assert a.classes == b.classes
        assert a.label.tobytes() == b.label.tobytes()


def test_different_index_split_or_seed_differs():
    base = render(0, "train", 0).image
    assert not np.array_equal(base, render(0, "train", 1).image)
    assert not np.array_equal(base, render(0, "val", 0).image)
    assert not np.array_equal(base, render(1, "train", 0).image)


def test_cache_and_pool_give_the_same_bytes(tmp_cache):
    direct = np.stack([render(3, "test", i).image for i in range(6)])
    labels = np.stack([render(3, "test", i).label for i in range(6)])
    pooled, pooled_labels = shapes.load_split("test", 6, seed=3, workers=2)
    assert shapes.cache_path("test", 6, 3).is_file()
    cached, cached_labels = shapes.load_split("test", 6, seed=3, workers=0)  # from the .npz
    for imgs, labs in [(pooled, pooled_labels), (cached, cached_labels)]:
        assert imgs.dtype == np.uint8 and imgs.shape == (6, IMAGE_SIZE, IMAGE_SIZE, 3)
        assert imgs.tobytes() == direct.tobytes()
        assert labs.tobytes() == labels.tobytes()


def test_cache_key_includes_seed_split_size_version(tmp_cache):
    p = shapes.cache_path("train", 100, 0)
    assert f"v{shapes.GENERATOR_VERSION}" in p.name
    assert len({p, shapes.cache_path("val", 100, 0), shapes.cache_path("train", 101, 0),
                shapes.cache_path("train", 100, 1)}) == 4
    assert p.parent == tmp_cache


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_ground_truth_is_consistent(split):
    for i in range(25):
        s = render(0, split, i)
        k = len(s.classes)
        assert k in (1, 2)
        assert len(set(s.classes)) == k
        assert s.image.dtype == np.uint8 and s.image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
        assert s.masks.dtype == bool and s.masks.shape == (k, IMAGE_SIZE, IMAGE_SIZE)
        assert s.label.dtype == np.float32 and s.label.shape == (NUM_CLASSES,)
        assert s.label.sum() == k and all(s.label[c] == 1 for c in s.classes)
        areas = s.masks.sum(axis=(1, 2))
        # smallest: a 40 px star (~450 px^2); largest: a 90 px circle (~6400 px^2)
        assert np.all(areas > 300) and np.all(areas < 7000), areas
        if k == 2:
            assert not (s.masks[0] & s.masks[1]).any()
        cm = s.class_masks()
        assert cm.shape == (NUM_CLASSES, IMAGE_SIZE, IMAGE_SIZE)
        assert [bool(cm[c].any()) for c in range(NUM_CLASSES)] == [bool(v) for v in s.label]


def test_all_classes_and_both_counts_occur():
    samples = [render(0, "train", i) for i in range(60)]
    seen = {c for s in samples for c in s.classes}
    assert seen == set(range(NUM_CLASSES))
    assert {len(s.classes) for s in samples} == {1, 2}


def test_objects_stand_out_from_the_background():
    s = render(0, "val", 7)
    for m in s.masks:
        inside = s.image[m].astype(float).mean(axis=0)
        ring = np.zeros_like(m)
        ys, xs = np.nonzero(m)
        ring[max(ys.min() - 6, 0) : ys.max() + 7, max(xs.min() - 6, 0) : xs.max() + 7] = True
        ring &= ~m
        outside = s.image[ring].astype(float).mean(axis=0)
        assert np.linalg.norm(inside - outside) > 20


def test_bad_split_raises():
    with pytest.raises(ValueError, match="unknown split"):
        render(0, "training", 0)


def test_dataset_items(tmp_cache):
    ds = ShapesDataset(split="val", size=5, seed=0, cache=False)
    cached = ShapesDataset(split="val", size=5, seed=0, cache=True)
    assert len(ds) == 5
    for i in range(5):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert y.dtype == torch.float32 and y.shape == (NUM_CLASSES,)
        x2, y2 = cached[i]
        assert torch.equal(x, x2) and torch.equal(y, y2)
        s = ds.sample(i)
        assert torch.equal(x, torch.from_numpy(s.image).permute(2, 0, 1).float() / 255)
        cm = ds.class_masks(i)
        assert cm.dtype == torch.bool and cm.shape == (NUM_CLASSES, IMAGE_SIZE, IMAGE_SIZE)
        assert torch.equal(cm.flatten(1).any(1).float(), y)
    with pytest.raises(IndexError):
        ds[5]


def test_rendered_content_is_pinned():
    """Rendering is a pure function of (seed, split, index): these values change only with
    :data:`shapes.GENERATOR_VERSION` (bump it, and update them, when a pixel changes)."""
    got = [(s.classes, s.masks.sum(axis=(1, 2)).tolist())
           for s in (render(0, "val", i) for i in range(3))]
    assert got == [([3, 4], [771, 919]), ([4, 1], [674, 1525]), ([1, 5], [2065, 2224])]
    assert shapes.GENERATOR_VERSION == 1


def test_shapes_sample_is_rendered_images_as_tensors():
    images, masks, classes = shapes.shapes_sample(3, split="val", start=1)
    assert images.dtype == torch.float32 and images.shape == (3, 3, IMAGE_SIZE, IMAGE_SIZE)
    for j, i in enumerate(range(1, 4)):
        s = render(0, "val", i)
        assert torch.equal(images[j], torch.from_numpy(s.image).permute(2, 0, 1).float() / 255)
        assert torch.equal(masks[j], torch.from_numpy(s.masks)) and classes[j] == s.classes
    with pytest.raises(ValueError, match="n: expected a positive int"):
        shapes.shapes_sample(0)


def test_first_images_slice_a_bigger_cache(tmp_cache):
    big_images, big_labels = shapes.load_split("test", 5, seed=0)
    images, labels = shapes.first_images("test", 3)
    assert images.tobytes() == big_images[:3].tobytes()
    assert labels.tobytes() == big_labels[:3].tobytes()
    assert not shapes.cache_path("test", 3, 0).exists()        # served from the 5-image file
    with pytest.raises(ValueError, match="size"):
        shapes.first_images("test", 0)
