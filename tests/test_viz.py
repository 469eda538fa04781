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


# ----------------------------------------------------------------------------- raw maps
def test_signed_colours_are_matplotlibs_symmetric_rdbu():
    from gradcam_edu.render import signed_colours

    raw = torch.tensor([[-2.0, 0.0], [1.0, 2.0]])
    colours, vmax = signed_colours(raw)
    assert vmax == 2.0 and colours.shape == (2, 2, 3) and colours.dtype == np.uint8
    cmap = matplotlib.colormaps["RdBu_r"]
    for value, (i, j) in [(0.0, (0, 0)), (0.5, (0, 1)), (0.75, (1, 0)), (1.0, (1, 1))]:
        assert colours[i, j].tolist() == list(cmap(value, bytes=True)[:3])   # -2 .. +2
    # what imshow(raw, cmap="RdBu_r", vmin=-2, vmax=2) draws, cell for cell
    norm = matplotlib.colors.Normalize(-2.0, 2.0)
    assert np.array_equal(colours, cmap(norm(raw.numpy()), bytes=True)[..., :3])
    zero, vmax = signed_colours(np.zeros((3, 3)))
    assert vmax == 0.0 and (zero == cmap(0.5, bytes=True)[:3]).all()     # middle colour


def test_raw_panel_shows_the_same_colours_at_its_grid():
    from gradcam_edu.render import raw_panel, signed_colours

    raw = torch.tensor([[-1.0, 3.0], [0.5, 0.0]])
    panel = np.asarray(raw_panel(raw, 40))
    assert panel.shape == (40, 40 + 74, 3)
    colours, _ = signed_colours(raw)
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 1)]:                     # cell centres
        assert panel[10 + 20 * i, 10 + 20 * j].tolist() == colours[i, j].tolist()


def test_show_raw_map_draws_the_grid_with_a_symmetric_colour_bar():
    from gradcam_edu.render import signed_colours
    from gradcam_edu.viz import show_raw_map

    raw = torch.tensor([[-1.0, 3.0], [0.5, 0.0]])
    fig, ax = matplotlib.pyplot.subplots()
    shown, bar = show_raw_map(ax, raw, size=224)
    assert np.array_equal(shown.get_array(), signed_colours(raw)[0])
    assert shown.get_extent() == [0, 224, 224, 0] and shown.get_interpolation() == "nearest"
    assert bar.mappable.norm.vmin == -3.0 and bar.mappable.norm.vmax == 3.0
    assert bar.ax.get_ylabel() == "raw value"
    _, none = show_raw_map(ax, raw, extent=(9.5, 11.5, 11.5, 9.5), colorbar=False)
    assert none is None and ax.images[-1].get_extent() == [9.5, 11.5, 11.5, 9.5]
    _, labelled = show_raw_map(ax, raw, colorbar={"label": "value", "shrink": 0.8})
    assert labelled.ax.get_ylabel() == "value"
    matplotlib.pyplot.close(fig)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """Relative luminance (Rec. 709) of sRGB colours in [0, 1], (..., 3) -> (...)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def test_heat_cmap_is_inferno_with_luminance_rising_with_the_value():
    from gradcam_edu import render, viz

    assert viz.HEAT_CMAP == render.HEAT_CMAP == "inferno"
    levels = matplotlib.colormaps[viz.HEAT_CMAP](np.linspace(0, 1, 256))[:, :3]
    lum = _luminance(levels)
    assert (np.diff(lum) > 0).all()            # brighter at every one of the 255 steps
    assert lum[0] < 0.01 and lum[-1] > 0.9     # near black at 0, near white at 1
    jet = _luminance(matplotlib.colormaps["jet"](np.linspace(0, 1, 256))[:, :3])
    assert (np.diff(jet) < 0).any()            # jet: darker again after its yellow band


def test_every_default_heat_colour_is_heat_cmap():
    from gradcam_edu import render

    expected = matplotlib.colormaps[render.HEAT_CMAP]
    assert render.Display().cmap == render.HEAT_CMAP
    # overlay at opacity 1: a map of 0 / 1 is exactly the colour map's first / last colour
    cam = torch.tensor([[0.0, 1.0]])
    out = overlay(torch.zeros(3, 1, 2), cam, alpha=1.0)
    np.testing.assert_allclose(out[0, 0], expected(0.0)[:3], atol=1e-6)
    np.testing.assert_allclose(out[0, 1], expected(1.0)[:3], atol=1e-6)
    # the explorer's heat view: 256 levels, 0 -> level 0, 1 -> level 255
    heat = np.asarray(render.heat_image(cam))
    assert heat[0, 0].tolist() == list(expected(0, bytes=True)[:3])
    assert heat[0, 1].tolist() == list(expected(255, bytes=True)[:3])
    # a grid of bare maps is drawn with it too
    fig = plot_grid(torch.zeros(3, 4, 4), {"layer4": {"grad_cam": torch.ones(4, 4)}},
                    overlay_maps=False)
    assert fig.axes[1].images[0].get_cmap().name == render.HEAT_CMAP
