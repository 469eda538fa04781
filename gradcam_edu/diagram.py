"""A torchvision ``BasicBlock`` drawn by code: its forward pass, the names that hook each point,
and the two paths the gradient takes back from the block output.

    fig = basic_block_diagram("layer4.1")              # identity skip
    fig = basic_block_diagram("layer4.0", downsample=True)   # 1x1 conv + bn on the skip

Forward: ``input -> conv1 -> bn1 -> relu -> conv2 -> bn2 -> (+) <- skip -> relu -> output``.
Every box is labelled with the exact name :func:`gradcam_edu.capture.capture` accepts
(:func:`hook_points`): ``relu#0`` / ``relu#1`` are the two calls of the block's one ReLU module,
``pre_relu`` (the sum) exists only on a model passed through
:func:`gradcam_edu.variants.with_sum_points`, and ``relu#1``'s output is the block output,
also called by the block's own name (``layer4.1``).

Backward: at (+) the gradient is copied, unchanged, to both summands: one copy goes down the
branch (bn2 -> conv2 -> relu -> bn1 -> conv1), the other along the skip to the block input;
nothing of the skip's copy enters conv2's output. Red dashed boxes: outputs that the next
operation overwrites in place (bn1's by the in-place ReLU, bn2's by ``out += identity`` and
the ReLU after it), the torchvision hook trap (a hook must clone them).

Drawn with explicit font sizes (>= 11 pt) on a figure of 11 x 4.5 inches; matplotlib's
``rcParams`` are left unchanged.
"""

from __future__ import annotations

import re

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch

__all__ = ["BRANCH_COLOUR", "HOOK_GID", "SKIP_COLOUR", "basic_block_diagram", "hook_points"]

FIGSIZE = (11.0, 4.5)
"""Inches; the axes run in inches too, so positions below are inches from the bottom left."""
BRANCH_COLOUR = "#d95f02"      # orange: the gradient through the residual branch
SKIP_COLOUR = "#1f78b4"        # blue: the gradient through the skip connection
INPLACE_COLOUR = "#c00000"     # red dashed: an output overwritten in place
HOOK_GID = "hook-point"
"""``gid`` of every text artist that shows a hook-point name (read them back with
``[t.get_text() for t in fig.findobj(Text) if t.get_gid() == HOOK_GID]``)."""
FONT = 11                      # points: the smallest text in the figure
MONO = "DejaVu Sans Mono"      # hook names, as typed

_Y_BOX, _BOX_H, _BOX_W = 2.62, 0.58, 0.86      # main row: centre, height, width
_Y_LABEL = (3.68, 3.26)                         # hook names, two staggered rows
_Y_BRANCH, _Y_SKIP_GRAD = 2.06, 1.9            # gradient lines under the main row
_Y_SKIP, _Y_SKIP_LOW = 1.22, 1.04               # skip path (forward), its gradient
_X0, _DX = 0.62, 1.16                           # first node centre, spacing
_BLOCK_NAME = re.compile(r"^[A-Za-z_]\w*(\.\w+)*$")
_INSIDE = {"conv1", "bn1", "relu", "conv2", "bn2", "conv3", "bn3", "downsample", "pre_relu"}


def _check(block_name, downsample) -> None:
    if not isinstance(block_name, str):
        raise TypeError(f"block_name: expected the dotted name of a residual block (str), "
                        f"such as 'layer4.1', got {type(block_name).__name__}")
    if not _BLOCK_NAME.match(block_name) or set(block_name.split(".")) & _INSIDE:
        raise ValueError(f"block_name: expected the dotted name of a residual block, such as "
                         f"'layer4.1' (no call index, not a layer inside it), got "
                         f"{block_name!r}")
    if not isinstance(downsample, bool):
        raise TypeError(f"downsample: expected True (a 1x1 conv + bn on the skip) or False "
                        f"(identity), got {downsample!r}")


def hook_points(block_name: str = "layer4.1", downsample: bool = False) -> dict[str, str]:
    """The diagram's hook points: node key -> the name ``capture`` accepts, in forward order.

    Keys: ``conv1 bn1 relu0 conv2 bn2 sum relu1 output`` (and ``down_conv down_bn`` on a
    downsampling skip). ``relu1`` and ``output`` are the same tensor: ``"<block>.relu#1"``
    and ``"<block>"``; ``sum`` (``"<block>.pre_relu"``) needs
    :func:`gradcam_edu.variants.with_sum_points`.
    """
    _check(block_name, downsample)
    b = block_name
    names = {"conv1": f"{b}.conv1", "bn1": f"{b}.bn1", "relu0": f"{b}.relu#0",
             "conv2": f"{b}.conv2", "bn2": f"{b}.bn2", "sum": f"{b}.pre_relu",
             "relu1": f"{b}.relu#1", "output": b}
    if downsample:
        names |= {"down_conv": f"{b}.downsample.0", "down_bn": f"{b}.downsample.1"}
    return names


# ------------------------------------------------------------------------------ drawing
def _x(i: float) -> float:
    """Centre of the i-th node of the main row (0: block input, 8: block output), inches."""
    return _X0 + i * _DX


def _box(ax: Axes, x: float, y: float, text: str, inplace: bool = False,
         w: float = _BOX_W, h: float = _BOX_H) -> None:
    edge = {"edgecolor": INPLACE_COLOUR, "linestyle": "--", "linewidth": 2.2} if inplace \
        else {"edgecolor": "black", "linewidth": 1.4}
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, facecolor="#f4f4f4", zorder=3,
                                boxstyle="round,pad=0,rounding_size=0.08", **edge))
    ax.text(x, y, text, ha="center", va="center", fontsize=FONT, zorder=4, linespacing=1.1)


def _arrow(ax: Axes, start, end, colour: str = "black", head: bool = True,
           lw: float = 1.6) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>" if head else "-",
                                 mutation_scale=13, color=colour, linewidth=lw,
                                 shrinkA=0, shrinkB=0, zorder=2))


def _path(ax: Axes, points, colour: str, heads=None, lw: float = 2.0) -> None:
    """Line segments through ``points``, with an arrowhead at the end of segment k for k in
    ``heads`` (default: the last one)."""
    heads = {len(points) - 2} if heads is None else set(heads)
    for k, (a, b) in enumerate(zip(points[:-1], points[1:], strict=True)):
        _arrow(ax, a, b, colour, head=k in heads, lw=lw)


def _hook(ax: Axes, x: float, row: int, name: str, top: float) -> None:
    """A hook-point name (a text artist with gid :data:`HOOK_GID`) over a node, with a leader
    line down to its top."""
    y = _Y_LABEL[row]
    ax.text(x, y, name, ha="center", va="center", fontsize=FONT, family=MONO, gid=HOOK_GID,
            zorder=4)
    ax.add_line(Line2D([x, x], [y - 0.1, top + 0.02], color="#888888", linewidth=0.9,
                       linestyle=":", zorder=1))


def _main_row(ax: Axes, names: dict[str, str], downsample: bool) -> None:
    stride = " /2" if downsample else ""
    nodes = [("input", "block\ninput"), ("conv1", f"conv1\n3x3{stride}"), ("bn1", "bn1"),
             ("relu0", "relu"), ("conv2", "conv2\n3x3"), ("bn2", "bn2"), ("sum", None),
             ("relu1", "relu"), ("output", "block\noutput")]
    top = _Y_BOX + _BOX_H / 2
    for i, (key, text) in enumerate(nodes):
        if key == "sum":
            ax.add_patch(Circle((_x(i), _Y_BOX), 0.21, facecolor="white", edgecolor="black",
                                linewidth=1.6, zorder=3))
            ax.text(_x(i), _Y_BOX, "+", ha="center", va="center", fontsize=18, zorder=4)
        else:
            _box(ax, _x(i), _Y_BOX, text, inplace=key in ("bn1", "bn2"))
        if key in names:
            _hook(ax, _x(i), (i + 1) % 2, names[key], _Y_BOX + 0.21 if key == "sum" else top)
    for i in range(7):
        left = _x(i) + (0.21 if i == 6 else _BOX_W / 2)
        right = _x(i + 1) - (0.21 if i + 1 == 6 else _BOX_W / 2)
        _arrow(ax, (left, _Y_BOX), (right, _Y_BOX))
    ax.text((_x(7) + _x(8)) / 2, _Y_BOX, "=", ha="center", va="center", fontsize=16)


def _skip(ax: Axes, names: dict[str, str], downsample: bool) -> None:
    """The skip connection: down from the block input, along, up into (+)."""
    bottom = _Y_BOX - _BOX_H / 2
    _path(ax, [(_x(0), bottom), (_x(0), _Y_SKIP), (_x(6), _Y_SKIP), (_x(6), _Y_BOX - 0.21)],
          "black", lw=1.6)
    if not downsample:
        ax.text(_x(1.5), _Y_SKIP + 0.06, "skip: identity", ha="center", va="bottom",
                fontsize=FONT)
        return
    ax.text(_x(0) + 0.12, _Y_SKIP + 0.06, "skip", ha="left", va="bottom", fontsize=FONT)
    for x, key, text in [(_x(1.6), "down_conv", "conv 1x1 /2"), (_x(3.8), "down_bn", "bn")]:
        _box(ax, x, _Y_SKIP, text, w=1.2 if key == "down_conv" else 0.6, h=0.42)
        ax.text(x, _Y_SKIP - 0.44, names[key], ha="center", va="center", fontsize=FONT,
                family=MONO, gid=HOOK_GID, zorder=4)


def _gradients(ax: Axes) -> None:
    """The gradient's two paths back from the block output, one colour each."""
    bottom = _Y_BOX - _BOX_H / 2
    xs = [_x(i) for i in range(8, -1, -1)]
    branch = [(_x(8) - 0.12, bottom), (_x(8) - 0.12, _Y_BRANCH),
              *[(x, _Y_BRANCH) for x in xs[1:-1]], (_x(0) + 0.14, _Y_BRANCH),
              (_x(0) + 0.14, bottom)]
    _path(ax, branch, BRANCH_COLOUR, heads=range(1, len(branch) - 1))
    edge = _x(6) + 0.16
    skip = [(_x(8) + 0.12, bottom), (_x(8) + 0.12, _Y_SKIP_GRAD), (_x(7), _Y_SKIP_GRAD),
            (edge, _Y_SKIP_GRAD), (edge, _Y_SKIP_LOW), (_x(3), _Y_SKIP_LOW),
            (_x(0) - 0.14, _Y_SKIP_LOW), (_x(0) - 0.14, bottom)]
    _path(ax, skip, SKIP_COLOUR, heads=(1, 2, 4, 6))


def _notes(ax: Axes) -> None:
    ax.text(_x(6) + 0.36, 1.5, "(+) copies the gradient, unchanged,\nto both summands",
            ha="left", va="center", fontsize=FONT, color="black")
    ax.text(_x(3.55), 1.6, "none of the skip's gradient enters conv2's output",
            ha="center", va="center", fontsize=FONT, color=BRANCH_COLOUR)


def _legend(ax: Axes) -> None:
    handles = [
        Line2D([], [], color="black", linewidth=1.6, label="forward pass"),
        Line2D([], [], color=BRANCH_COLOUR, linewidth=2.0,
               label="gradient through the branch (bn2, conv2, relu#0, bn1, conv1)"),
        Line2D([], [], color=SKIP_COLOUR, linewidth=2.0,
               label="gradient through the skip (to the block input)"),
        Patch(facecolor="#f4f4f4", edgecolor=INPLACE_COLOUR, linestyle="--", linewidth=2.0,
              label="output overwritten in place (by relu, by +=): hooks clone it"),
    ]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=2,
              fontsize=FONT, frameon=False, handlelength=2.2, columnspacing=1.6)


def basic_block_diagram(block_name: str = "layer4.1", ax: Axes | None = None,
                        downsample: bool = False) -> Figure:
    """Draw a torchvision ``BasicBlock`` named ``block_name``: boxes and arrows of its forward
    pass, the hook-point names ``capture`` accepts (:func:`hook_points`), the gradient's two
    paths back from the output (branch, skip; see the module docstring) and the outputs
    overwritten in place. ``downsample``: the skip is a 1x1 conv + bn (the first block of
    layer2-4) instead of the identity.

    ``ax``: draw there (it should be about 11 x 4.5 inches; its limits and frame are set);
    None: a new figure of 11 x 4.5 inches. Returns the figure; ``rcParams`` are unchanged.
    """
    names = hook_points(block_name, downsample)
    if ax is None:
        fig = Figure(figsize=FIGSIZE)
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    elif not isinstance(ax, Axes):
        raise TypeError(f"ax: expected a matplotlib Axes or None, got {type(ax).__name__}")
    ax.set(xlim=(0, FIGSIZE[0]), ylim=(0, FIGSIZE[1]), aspect="equal")
    ax.set_axis_off()
    ax.text(FIGSIZE[0] / 2, 4.2, f"torchvision BasicBlock {block_name}: the names capture "
            "accepts, and the gradient's two paths back", ha="center", va="center",
            fontsize=13)
    _main_row(ax, names, downsample)
    _skip(ax, names, downsample)
    _gradients(ax)
    _notes(ax)
    _legend(ax)
    return ax.figure
