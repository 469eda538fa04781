"""Figures: overlay arithmetic and the layers x methods grid."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from gradcam_edu.viz import overlay, plot_grid  # noqa: E402


def test_overlay_blends_colormap_over_image():
    image = torch.zeros(3, 4, 4)
    cam = torch.ones(4, 4)
    out = overlay(image, cam, cmap="gray", alpha=0.25)
    assert out.shape == (4, 4, 3)
    np.testing.assert_allclose(out, 0.25, atol=1e-6)  # white map at 25 % over black
    np.testing.assert_allclose(overlay(image, cam, alpha=0.0), 0.0)


def test_overlay_accepts_pil_and_uint8_and_checks_shapes():
    pil = Image.fromarray(np.full((8, 8, 3), 255, dtype=np.uint8))
    out = overlay(pil, np.zeros((8, 8)), cmap="gray", alpha=0.5)
    np.testing.assert_allclose(out, 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="cam: map of shape"):
        overlay(pil, np.zeros((7, 7)))
    with pytest.raises(ValueError, match="alpha"):
        overlay(pil, np.zeros((8, 8)), alpha=1.5)
    with pytest.raises(ValueError, match=r"cam: expected one map \(H, W\)"):
        overlay(pil, np.zeros((2, 8, 8)))


def test_plot_grid_has_rows_columns_titles_and_colorbar():
    image = torch.rand(3, 16, 16)
    maps = {layer: {m: torch.rand(16, 16) for m in ("Grad-CAM", "HiResCAM")}
            for layer in ("layer3", "layer4")}
    fig = plot_grid(image, maps, title="demo")
    axes = fig.get_axes()
    assert len(axes) == 2 * 3 + 1  # 2 rows x (image + 2 methods) + colour bar
    titles = [ax.get_title() for ax in axes]
    assert {"image", "Grad-CAM", "HiResCAM"} <= set(titles)
    assert [ax.get_ylabel() for ax in axes[:6:3]] == ["layer3", "layer4"]
    assert fig._suptitle.get_text() == "demo"
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="maps: nothing to plot"):
        plot_grid(image, {})
