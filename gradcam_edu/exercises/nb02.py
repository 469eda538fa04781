"""Checkers for notebook 02, *The full ResNet*.

As in :mod:`gradcam_edu.exercises.nb01`, every ``check_*`` returns a :class:`Verdict` (true
when the answer is right, with a message that says why not when it is not).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from ..resnet import STAGES, STEM
from .nb01 import Verdict

__all__ = ["Verdict", "check_block_output_call", "gradient_paths", "check_path_counts",
           "check_conv1_share", "check_comparison"]

RESNET18_BLOCKS = tuple(f"{stage}.{i}" for stage in STAGES for i in range(2))
"""The eight BasicBlocks of a ResNet-18 (two per stage), in forward order."""


# ----------------------------------------------------------------------------- exercise 1
def check_block_output_call(name: object) -> Verdict:
    """Exercise 1: the capture name whose tensor equals the output of block ``layer4.1``
    (the second call of the block's shared ReLU)."""
    if not isinstance(name, str):
        return Verdict(False, f"answer with a capture name (a str), got {type(name).__name__}.")
    name = name.strip()
    if name == "layer4.1.relu#1":
        return Verdict(True, "the block's ReLU runs twice; its second call, after "
                       "out += identity, produces the block's output.")
    if name == "layer4.1.relu":
        return Verdict(False, "that module runs twice per forward, so the name alone is "
                       "ambiguous (capture refuses it); add the call index: '#0' or '#1'.")
    if name == "layer4.1.relu#0":
        return Verdict(False, "the first call is the ReLU after bn1, inside the residual "
                       "branch; the block's output comes from the call after the addition.")
    if name in ("layer4.1", "layer4"):
        return Verdict(False, f"{name!r} is the block's output itself (the reference); which "
                       "name *inside* the block gives the same tensor?")
    if name.startswith("layer4.1.bn2") or name.startswith("layer4.1.conv2"):
        return Verdict(False, f"{name!r} is before the addition of the skip and before the "
                       "final ReLU: it holds the residual only, and can be negative.")
    return Verdict(False, f"{name!r} is not it: look for the module of layer4.1 that runs "
                   "twice, and pick the call after the skip is added.")


# ----------------------------------------------------------------------------- exercise 2
def gradient_paths(layer: str) -> int:
    """Number of distinct gradient paths from ``layer``'s output to the logit in a ResNet-18.

    Every residual block after the layer doubles the count (the gradient can go through the
    branch or through the skip); a layer inside a block reaches the block's output by one path
    (the branch). Names as in torchvision (``"conv1"``, ``"layer3.1.conv2"``, ``"layer4"``);
    a reused ReLU needs its call index (``"layer4.1.relu#0"``).
    """
    if layer in STEM:
        return 2 ** len(RESNET18_BLOCKS)
    if layer in ("avgpool", "fc"):
        return 1
    m = re.fullmatch(r"layer([1-4])(?:\.([01])(?:\.(.+))?)?", layer)
    if not m:
        raise ValueError(f"layer: {layer!r} is not a layer of a ResNet-18 (names such as "
                         "'conv1', 'layer2', 'layer3.1', 'layer4.1.conv2', 'layer4.0.relu#1')")
    stage, block, inner = m.group(1), m.group(2), m.group(3)
    if block is None:            # a stage's output = its last block's output
        block = "1"
    index = RESNET18_BLOCKS.index(f"layer{stage}.{block}")
    after = len(RESNET18_BLOCKS) - index - 1
    if inner is None or inner == "relu#1":
        return 2 ** after        # the block's output
    if inner == "relu":
        raise ValueError(f"layer: {layer!r} runs twice; name the call: "
                         f"'{layer}#0' (inside the branch) or '{layer}#1' (the block's output)")
    if inner in ("conv1", "bn1", "relu#0", "conv2", "bn2", "downsample", "downsample.0",
                 "downsample.1"):
        return 2 ** after        # one path to the block's output, then the blocks after it
    raise ValueError(f"layer: {layer!r} is not a layer of a BasicBlock")


def check_path_counts(answers: object) -> Verdict:
    """Exercise 2: ``{layer name: number of gradient paths to the logit}`` for at least
    ``layer4.1.conv2``, ``layer4.0.conv2``, ``layer3.1.conv2`` and ``conv1``."""
    required = ("layer4.1.conv2", "layer4.0.conv2", "layer3.1.conv2", "conv1")
    if not isinstance(answers, Mapping):
        return Verdict(False, "answer with a dict {layer name: number of paths}, e.g. "
                       "{'layer4.1.conv2': ..., 'conv1': ...}.")
    missing = [k for k in required if k not in answers]
    if missing:
        return Verdict(False, f"give a count for {', '.join(missing)} too.")
    wrong = []
    for layer, given in answers.items():
        try:
            right = gradient_paths(str(layer))
        except ValueError as err:
            return Verdict(False, str(err))
        if not isinstance(given, int | float) or given != right:
            after = int(math.log2(right)) if right > 1 else 0
            wrong.append(f"{layer}: you said {given!r}; {after} residual block(s) come after "
                         f"it, each one a fork (skip or branch)")
    if wrong:
        return Verdict(False, "; ".join(wrong) + ". From a layer inside a block, one path "
                       "leads to the block's output; every later block doubles the count.")
    return Verdict(True, "from layer4.1.conv2 there is exactly one path to the logit (the "
                   "skip never reaches conv2's output); conv1's gradient sums 2^8 = 256 paths.")


# ----------------------------------------------------------------------------- exercise 3
def check_conv1_share(share: object) -> Verdict:
    """Exercise 3: the largest share of the 112 x 112 entries of one conv1 channel that can
    receive a nonzero gradient through the stem's 3x3, stride-2 max-pool (output 56 x 56):
    1/4."""
    if not isinstance(share, int | float) or isinstance(share, bool):
        return Verdict(False, f"answer with a number between 0 and 1, got {type(share).__name__}.")
    if abs(share - 0.25) < 1e-3:
        return Verdict(True, "in each channel, each of the 56 x 56 max-pool outputs passes "
                       "its gradient to one input entry (its maximum): at most 3136 of 12544 "
                       "entries, 1 in 4. The others get exactly zero: the grid effect.")
    if abs(share - 0.75) < 1e-3:
        return Verdict(False, "0.75 is the smallest share that gets *zero* gradient; the "
                       "question asks for the share that can receive some.")
    if abs(share - 1 / 9) < 1e-3:
        return Verdict(False, "a window holds 9 positions, but windows overlap (stride 2): "
                       "count winners per output position, not per window size.")
    if share > 1 or share < 0:
        return Verdict(False, "a share lies between 0 and 1.")
    return Verdict(False, "count it, in one channel: how many max-pool outputs are there "
                   "(56 x 56), how many input entries does each one pass a gradient to, and how "
                   "many conv1 entries are there (112 x 112)?")


# ----------------------------------------------------------------------------- exercise 4
def check_comparison(answer: object, board, a: tuple[str, str], b: tuple[str, str],
                     metric: str = "energy") -> Verdict:
    """Exercise 4: reading a paired-bootstrap interval. ``answer`` is ``"higher"``,
    ``"lower"`` or ``"no evidence"``: is ``a``'s mean ``metric`` higher or lower than ``b``'s on
    ``board`` (a :class:`gradcam_edu.scoreboard.Scoreboard`), judged by whether the 95%
    interval of the paired difference excludes 0?"""
    cmp = board.compare(a, b, metric=metric)
    d, lo, hi = cmp["difference"], cmp["low"], cmp["high"]
    right = "higher" if lo > 0 else "lower" if hi < 0 else "no evidence"
    stats = f"difference {d:+.3f}, 95% interval [{lo:+.3f}, {hi:+.3f}]"
    if not isinstance(answer, str) or answer.strip().lower() not in (
            "higher", "lower", "no evidence"):
        return Verdict(False, "answer 'higher', 'lower' or 'no evidence'.")
    answer = answer.strip().lower()
    if answer == right:
        why = ("the whole interval lies on one side of 0" if right != "no evidence"
               else "the interval contains 0: these images cannot tell the two apart")
        return Verdict(True, f"{stats}: {why}.")
    if right == "no evidence":
        return Verdict(False, f"{stats}: the mean difference has a sign, but the interval "
                       "contains 0, so these images do not show a difference.")
    return Verdict(False, f"{stats}: read the interval, not only the sign of the means; "
                   f"where does it lie relative to 0?")
