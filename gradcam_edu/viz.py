"""Figures: a map overlaid on its image, a raw signed map at its grid, and grids of layers x
methods (or x classes).

NumPy and matplotlib live here, at the edge; the math elsewhere stays in torch. A [0, 1] map is
coloured by :data:`HEAT_CMAP` (re-exported here; ``inferno``, perceptually uniform; see
:data:`gradcam_edu.render.HEAT_CMAP`), a raw map by
:func:`gradcam_edu.render.signed_colours`, as in the explorer.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib
import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from PIL import Image

from .images import to_rgb
from .render import HEAT_CMAP, RAW_CMAP, signed_colours


def to_numpy_image(image) -> np.ndarray:
    """An image as float (H, W, 3) in [0, 1], from a (3, H, W) or (1, 3, H, W) tensor in [0, 1],
    an (H, W, 3) array (uint8 or float) or a PIL image."""
    if isinstance(image, Image.Image):
        image = np.asarray(to_rgb(image))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"image: expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
        image = image.expand(3, -1, -1).permute(1, 2, 0).numpy()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image: expected an RGB image (H, W, 3), got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def to_numpy_map(cam) -> np.ndarray:
    """A map as float (H, W), from a (H, W) or (1, H, W) tensor or array."""
    if isinstance(cam, torch.Tensor):
        cam = cam.detach().cpu().float().numpy()
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim == 3 and cam.shape[0] == 1:
        cam = cam[0]
    if cam.ndim != 2:
        raise ValueError(f"cam: expected one map (H, W), got shape {cam.shape}")
    return cam


def overlay(image, cam, cmap: str = HEAT_CMAP, alpha: float = 0.5) -> np.ndarray:
    """Blend a [0, 1] map coloured by ``cmap`` over ``image``: float (H, W, 3) in [0, 1].

    ``alpha`` is the opacity of the map (0: image only, 1: map only).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected an opacity between 0 and 1, got {alpha}")
    img = to_numpy_image(image)
    heat = to_numpy_map(cam)
    if heat.shape != img.shape[:2]:
        raise ValueError(f"cam: map of shape {heat.shape} does not match the image "
                         f"{img.shape[:2]}; upsample it first (gradcam_edu.cams.upsample)")
    colours = matplotlib.colormaps[cmap](np.clip(heat, 0.0, 1.0))[..., :3]
    return (1.0 - alpha) * img + alpha * colours


def show_raw_map(ax: Axes, raw, size: int | tuple[int, int] | None = None,
                 extent: tuple[float, float, float, float] | None = None,
                 colorbar: bool | dict = True, cmap: str = RAW_CMAP,
                 ) -> tuple[AxesImage, Colorbar | None]:
    """Draw a raw signed map (h, w) on ``ax`` at its own grid: nearest-neighbour cells,
    coloured by :func:`gradcam_edu.render.signed_colours` (``RdBu_r`` from -max|v| to
    +max|v|, 0 the middle colour), the same colours as the explorer's raw panel.

    ``size``: the image size the grid covers, an int or (H, W) (the axes then run in image
    pixels, ``extent=(0, W, H, 0)``); ``extent``: explicit axes coordinates (overrides
    ``size``); neither: grid cell coordinates. ``colorbar``: True for a colour bar labelled
    "raw value", a dict of ``Figure.colorbar`` keywords (``label``, ``shrink``, ...), or
    False. Returns the image and the colour bar (None without one).
    """
    colours, vmax = signed_colours(raw, cmap)
    if extent is None and size is not None:
        height, width = (size, size) if isinstance(size, int) else size
        extent = (0, width, height, 0)
    shown = ax.imshow(colours, interpolation="nearest", extent=extent)
    if colorbar is False:
        return shown, None
    v = vmax or 1.0  # an all-zero map: any symmetric range shows it as the middle colour
    mappable = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(-v, v), cmap)
    options = {"fraction": 0.046, "pad": 0.03, "label": "raw value",
               **(colorbar if isinstance(colorbar, dict) else {})}
    return shown, ax.figure.colorbar(mappable, ax=ax, **options)


def plot_grid(image, maps: Mapping[str, Mapping[str, object]], cmap: str = HEAT_CMAP,
              alpha: float = 0.5, title: str | None = None, cell_size: float = 2.2,
              overlay_maps: bool = True) -> Figure:
    """A grid figure: one row per key of ``maps`` (e.g. layers), one column per inner key
    (e.g. methods or classes); each cell shows the map (over the image when ``overlay_maps``).
    ``image`` is shown in the first column. One shared colour bar for the map values [0, 1].
    """
    rows = list(maps)
    if not rows:
        raise ValueError("maps: nothing to plot (an empty mapping)")
    cols = list(dict.fromkeys(c for r in rows for c in maps[r]))
    fig, axes = plt.subplots(len(rows), len(cols) + 1, squeeze=False, layout="constrained",
                             figsize=(cell_size * (len(cols) + 1) + 1.0,
                                      cell_size * len(rows) + (0.5 if title else 0.2)))
    img = to_numpy_image(image)
    norm = matplotlib.colors.Normalize(0.0, 1.0)
    for i, row in enumerate(rows):
        axes[i, 0].imshow(img)
        axes[i, 0].set_ylabel(row, fontsize=9)
        for j, col in enumerate(cols, start=1):
            ax = axes[i, j]
            if col in maps[row]:
                heat = to_numpy_map(maps[row][col])
                if overlay_maps:
                    ax.imshow(overlay(img, heat, cmap=cmap, alpha=alpha))
                else:
                    ax.imshow(heat, cmap=cmap, norm=norm)
            if i == 0:
                ax.set_title(col, fontsize=10)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=10)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=axes, shrink=min(0.9, 0.35 * len(rows) + 0.3), label="map value (0 to 1)")
    if title:
        fig.suptitle(title)
    return fig
