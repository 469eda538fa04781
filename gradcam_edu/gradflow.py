"""Where does the gradient go in a ResNet? Skip path versus residual branch, block by block.

A torchvision residual block computes ``y = ReLU(branch(x) + skip(x))`` where ``branch`` is
conv1-bn1-relu-conv2-bn2 (``bn3`` last in a ``Bottleneck``) and ``skip`` is the identity or
``downsample`` (1x1 conv + bn). With ``g_out = d score / d y`` (captured at the block's output)
the gradient at the pre-ReLU sum is ``g_pre = g_out * [y > 0]``, and the gradient arriving
at the block's input splits exactly in two::

    g_in = J_branch(x)^T g_pre  +  J_skip(x)^T g_pre
           \\___ through the branch __/   \\___ through the skip (= g_pre for the identity) __/

Both terms are vector-Jacobian products on the graph of ONE capture
(:func:`gradcam_edu.capture.capture`, :meth:`~gradcam_edu.capture.Capture.pullback`): the
block's input ``x`` (the previous block's output, or ``maxpool`` for the first block:
:func:`gradcam_edu.resnet.block_inputs`), the branch end (``bn2``,
:func:`gradcam_edu.resnet.branch_end`) and ``downsample`` are captured tensors, so
``cap.pullback("<block>.bn2", "<input>", g_pre)`` is exactly the branch's share. Their sum
reproduces the captured gradient at the input (checked, and reported as
``reconstruction_error``).

The skip carries gradient to the block's *input*; nothing inside the block (``conv2``) sees
it. This is the course's answer to claim (a) of the source post.

:func:`zero_gradient_share` counts gradient entries that are exactly zero, per layer: behind
the stem's 3x3 / stride-2 max-pool at most one ``conv1`` position in four gets a gradient
(the "grid effect").
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import resnet, weights
from .capture import Target, capturable_layers, capture
from .shapes import shapes_sample
from .tables import format_rows


@dataclass
class BlockFlow:
    """The gradient through one residual block, per image (tensors ``(N,)``).

    ``skip_norm`` / ``branch_norm``: L2 norms of the two parts of the input gradient;
    ``input_norm``: of their sum (the gradient at the block's input);
    ``skip_share = skip_norm / (skip_norm + branch_norm)`` in [0, 1];
    ``skip_projection = <g_skip, g_in> / |g_in|^2``: the skip's part of the input gradient
    along itself (skip + branch projections sum to exactly 1; values outside [0, 1] mean the
    two paths partly cancel); ``cosine``: cosine similarity of the two parts.
    ``reconstruction_error``: max |g_skip + g_branch - g_in| over the batch.
    """

    block: str
    skip: str
    skip_norm: torch.Tensor
    branch_norm: torch.Tensor
    input_norm: torch.Tensor
    skip_share: torch.Tensor
    skip_projection: torch.Tensor
    cosine: torch.Tensor
    reconstruction_error: float

    def row(self) -> dict:
        """Means over the images as a plain dict (one row of the block table)."""
        return {"block": self.block, "skip": self.skip,
                "skip_norm": float(self.skip_norm.mean()),
                "branch_norm": float(self.branch_norm.mean()),
                "input_norm": float(self.input_norm.mean()),
                "skip_share": float(self.skip_share.mean()),
                "skip_projection": float(self.skip_projection.nanmean()),
                "cosine": float(self.cosine.nanmean())}


def gradient_flow(model: nn.Module, x: torch.Tensor, target: Target,
                  blocks: Sequence[str] | None = None) -> list[BlockFlow]:
    """Split the gradient at every residual block's input into skip and branch parts.

    ``x``: images ``(N, 3, H, W)``; ``target``: the class score to differentiate (as in
    :func:`gradcam_edu.capture.capture`); ``blocks``: names such as ``"layer4.1"`` (default:
    all, see :func:`gradcam_edu.resnet.blocks`). One forward and one backward for all blocks,
    plus two vector-Jacobian products per block restricted to that block
    (:meth:`gradcam_edu.capture.Capture.pullback`). Returns one
    :class:`BlockFlow` per block, in forward order.
    """
    pairs = _blocks(model, blocks)
    modules = dict(model.named_modules())
    ends = {b: f"{b}.{resnet.branch_end(modules[b])}" for b, _ in pairs}
    skips = {b: f"{b}.downsample" for b, _ in pairs if modules[b].downsample is not None}
    layers = list(dict.fromkeys(n for b, i in pairs for n in (i, b, ends[b], skips.get(b))
                                if n is not None))
    flows = []
    with capture(model, layers) as cap:
        cap.forward(x)
        cap.backward(target)
        for block, inp in pairs:
            g_pre = cap.gradients[block] * (cap.activations[block] > 0)
            g_branch = cap.pullback(ends[block], inp, g_pre)
            if block in skips:
                g_skip, kind = cap.pullback(skips[block], inp, g_pre), "downsample"
            else:
                g_skip, kind = g_pre, "identity"
            flows.append(_block_flow(block, kind, g_skip, g_branch, cap.gradients[inp]))
    return flows


def _blocks(model: nn.Module, blocks: Sequence[str] | None) -> list[tuple[str, str]]:
    """``(block, its input)`` of the requested blocks (all when None), in forward order."""
    pairs = resnet.block_inputs(model)
    if blocks is None:
        return pairs
    if isinstance(blocks, str):
        blocks = [blocks]
    known = {b for b, _ in pairs}
    unknown = [b for b in blocks if b not in known]
    if unknown:
        raise ValueError(f"blocks: {unknown} are not residual blocks of this model; valid: "
                         f"{', '.join(b for b, _ in pairs)}")
    return [(b, i) for b, i in pairs if b in set(blocks)]


def _block_flow(block: str, kind: str, g_skip: torch.Tensor, g_branch: torch.Tensor,
                g_in: torch.Tensor) -> BlockFlow:
    n = g_in.shape[0]
    s, b, g = (t.reshape(n, -1).double() for t in (g_skip, g_branch, g_in))
    s_norm, b_norm, g_norm = s.norm(dim=1), b.norm(dim=1), g.norm(dim=1)
    total = s_norm + b_norm
    share = torch.where(total > 0, s_norm / total.clamp(min=1e-300), torch.full_like(total, 0.5))
    nan = torch.full_like(total, float("nan"))
    projection = torch.where(g_norm > 0, (s * g).sum(1) / g_norm.clamp(min=1e-300) ** 2, nan)
    cos = torch.where(s_norm * b_norm > 0,
                      (s * b).sum(1) / (s_norm * b_norm).clamp(min=1e-300), nan)
    return BlockFlow(block=block, skip=kind, skip_norm=s_norm.float(), branch_norm=b_norm.float(),
                     input_norm=g_norm.float(), skip_share=share.float(),
                     skip_projection=projection.float(), cosine=cos.float(),
                     reconstruction_error=float((s + b - g).abs().max()))


def flow_table(flows: Sequence[BlockFlow]) -> list[dict]:
    """One dict row per block (means over images): block, skip kind, norms, shares."""
    return [f.row() for f in flows]


def zero_gradient_share(model: nn.Module, x: torch.Tensor, target: Target,
                        layers: Sequence[str] | None = None) -> list[dict]:
    """Share of gradient entries that are exactly zero, per layer, from ONE capture.

    ``layers``: names to inspect (default: every layer with a 4-D output,
    :func:`gradcam_edu.capture.capturable_layers`). Rows ``{"layer", "grid" (h, w),
    "zero_entries", "zero_positions"}``: share of entries of ``d score / d A`` ``(N, C, h, w)``
    equal to 0, and share of positions where every channel's gradient is 0.
    """
    names = list(layers) if layers is not None else capturable_layers(model, x)
    rows = []
    with capture(model, names) as cap:
        cap.forward(x)
        cap.backward(target)
        for name in cap.layer_names:
            zero = cap.gradients[name] == 0
            rows.append({"layer": name, "grid": tuple(zero.shape[-2:]),
                         "zero_entries": float(zero.float().mean()),
                         "zero_positions": float(zero.all(dim=1).float().mean())})
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m gradcam_edu.gradflow [--images 32]``: the block table and the zero-gradient
    shares of the shipped ``resnet18-shapes`` on held-out images, each image's first class."""
    parser = argparse.ArgumentParser(prog="python -m gradcam_edu.gradflow",
                                     description=main.__doc__)
    parser.add_argument("--model", default="resnet18-shapes")
    parser.add_argument("--images", type=int, default=32)
    args = parser.parse_args(argv)
    model = weights.load_model(args.model)
    x, _, classes = shapes_sample(args.images)
    target = [c[0] for c in classes]
    flows = gradient_flow(model, x, target)
    print(f"{args.model}: gradient at each block's input, skip vs branch "
          f"({args.images} 'test' images, target = first object's class)")
    print(format_rows(flow_table(flows)))
    print(f"max |g_skip + g_branch - g_in| = {max(f.reconstruction_error for f in flows):.1e}")
    last = resnet.last_block(model)
    rows = zero_gradient_share(model, x, target, [*resnet.STEM, "layer1.0.conv1",
                                                  f"{last}.conv2"])
    print(format_rows([{**r, "grid": "x".join(map(str, r["grid"]))} for r in rows]))


if __name__ == "__main__":
    main()
