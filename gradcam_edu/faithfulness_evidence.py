"""Faithfulness beside localisation: deletion and insertion of the trained model's maps at the
layers of the verdict's purpose table, for every training seed, on the first
:data:`N_IMAGES` images of the verdict's evidence (the same (image, class) pairs, in the same
order, as the first pairs of :func:`gradcam_edu.evidence.load_evidence`).

Deletion blacks out a map's most salient pixels first (lower area: the map found what the
score depends on); insertion reveals them on a blurred image (higher: better). Both are
scored by :func:`gradcam_edu.faithfulness_board.faithfulness_board`, with
:data:`STEPS` steps. References are scored on the same pairs, with no model inside the map:
``random`` (uniform noise per pixel, seeded: the score of a map that knows nothing),
``random RxR`` for each grid of :data:`LAYER_GRIDS` (noise on that grid, upsampled as a CAM
is: a map that knows nothing but deletes pixels in blocks of that size, the fair reference
for a layer on that grid), ``centre`` (:func:`gradcam_edu.metrics.centre_map`) and
``object mask`` (the true mask of the pair's object, blurred so that its interior ranks
first). The mask is a reference, not a bound: the model may rely on pixels outside the
object (its edges, the background next to it), so a map can beat it. Blacking out pixels
also takes an image away from what the model was trained on; deletion scores carry that.

Scoring takes minutes, so it is done once and shipped:

    python -m gradcam_edu.faithfulness_evidence   # -> data/faithfulness.safetensors + .json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.transforms.functional import gaussian_blur

from . import weights
from .cams import upsample
from .evidence import SEEDS, model_name, read_checked, write_checked
from .faithfulness import MODES, curve_auc, perturbation_curves
from .faithfulness_board import faithfulness_board
from .metrics import centre_map
from .shapes import shapes_sample
from .threads import torch_threads

__all__ = ["LAYERS", "METHODS", "N_IMAGES", "REFERENCES", "STEPS", "Faithfulness",
           "load_faithfulness", "main", "measure_faithfulness", "reference_maps",
           "save_faithfulness"]

LAYERS = ("conv1", "layer1.1", "layer2.1", "layer3.1", "layer4.0", "layer4.1.conv2", "layer4.1")
METHODS = ("gradcam", "hirescam", "layercam")
LAYER_GRIDS = {"conv1": 112, "layer1.1": 56, "layer2.1": 28, "layer3.1": 14, "layer4.0": 7,
               "layer4.1.conv2": 7, "layer4.1": 7}
"""The grid (rows = columns) of each layer of :data:`LAYERS` for a 224 x 224 input."""
REFERENCES = ("random", *(f"random {g}x{g}" for g in sorted(set(LAYER_GRIDS.values()))),
              "centre", "object mask")
N_IMAGES = 64
STEPS = 16
COMMAND = "python -m gradcam_edu.faithfulness_evidence"


@dataclass
class Faithfulness:
    """``scores[key][mode]`` ``(S, P)``: areas under the deletion / insertion curves (S seeds,
    P pairs); ``key`` is ``"layer|method"`` or ``"(reference)|name"``; ``image_index``,
    ``target_class`` ``(P,)``: the pairs; ``seeds``; ``meta``: how it was made."""

    scores: dict[str, dict[str, torch.Tensor]]
    image_index: torch.Tensor
    target_class: torch.Tensor
    seeds: tuple[int, ...]
    meta: dict

    def get(self, layer: str, method: str, mode: str) -> torch.Tensor:
        """``(S, P)`` scores of ``mode`` ("deletion" or "insertion") at (layer, method);
        ``layer="(reference)"`` with a name of :data:`REFERENCES` for a reference map."""
        key = f"{layer}|{method}"
        if key not in self.scores:
            raise ValueError(f"layer/method: {key!r} was not measured; measured: "
                             f"{sorted(self.scores)}")
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        return self.scores[key][mode]


def reference_maps(masks: Sequence[torch.Tensor], classes: Sequence[Sequence[int]],
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """The model-free maps ``{name: (P, H, W)}`` of :data:`REFERENCES`, one per (image, class)
    pair in scoreboard order (image order, then object order); the random ones drawn from
    ``seed`` (the per-pixel noise first, then each grid's, smallest grid first)."""
    pair_masks = torch.stack([m[k].float() for m, c in zip(masks, classes, strict=True)
                              for k in range(len(c))])
    p, h, w = pair_masks.shape
    gen = torch.Generator().manual_seed(seed)
    k = min(31, 2 * ((min(h, w) - 1) // 2) + 1)       # sigma 6 px, kernel inside the image
    out = {"random": torch.rand(p, h, w, generator=gen)}
    for g in sorted(set(LAYER_GRIDS.values())):
        out[f"random {g}x{g}"] = upsample(torch.rand(p, g, g, generator=gen), (h, w))
    return {**out, "centre": centre_map(h, w).expand(p, h, w).clone(),
            "object mask": gaussian_blur(pair_masks[:, None], [k, k], [6.0])[:, 0]
            + 1e-3 * centre_map(h, w)}       # the interior first; ties toward the centre


def _score_seed(seed: int, images, masks, classes, steps: int, batch_size: int):
    model = weights.load_model(model_name(seed)).eval()
    board = faithfulness_board(model, images, classes, LAYERS, METHODS, steps=steps,
                               batch_size=batch_size)
    out = {f"{la}|{m}": board.scores[(la, m)] for la in board.layers for m in board.methods}
    for name, maps in reference_maps(masks, classes).items():
        curves = perturbation_curves(model, images, maps, board.target_class, steps,
                                     board.image_index, batch_size=batch_size)
        out[f"(reference)|{name}"] = {mode: curve_auc(curves[mode]) for mode in MODES}
    return out, board.image_index, board.target_class


def measure_faithfulness(seeds: Sequence[int] = SEEDS, n_images: int = N_IMAGES,
                         steps: int = STEPS, batch_size: int = 32) -> Faithfulness:
    """Deletion and insertion of every (layer, method) of :data:`LAYERS` x :data:`METHODS`
    and of the :data:`REFERENCES` for every seed, on held-out "test" images 0 .. n_images-1."""
    if not seeds:
        raise ValueError("seeds: expected at least one training seed")
    images, masks, classes = shapes_sample(n_images, split="test")
    t0 = time.perf_counter()
    per_seed = []
    with torch_threads(2):
        for seed in seeds:
            scores, index, target = _score_seed(seed, images, masks, classes, steps, batch_size)
            per_seed.append(scores)
    stacked = {k: {m: torch.stack([s[k][m] for s in per_seed]) for m in MODES}
               for k in per_seed[0]}
    meta = {"n_images": n_images, "split": "test", "steps": steps, "layers": list(LAYERS),
            "methods": list(METHODS), "references": list(REFERENCES),
            "models": [model_name(s) for s in seeds],
            "seconds": round(time.perf_counter() - t0, 1), "command": COMMAND}
    return Faithfulness(stacked, index, target, tuple(seeds), meta)


def save_faithfulness(fe: Faithfulness, folder: str | Path | None = None) -> dict:
    """Write ``faithfulness.safetensors`` and ``faithfulness.json`` (sha256-checked)."""
    keys = sorted(fe.scores)
    tensors = {"image_index": fe.image_index, "target_class": fe.target_class,
               **{f"{i}/{m}": fe.scores[k][m] for i, k in enumerate(keys) for m in MODES}}
    card = {"seeds": list(fe.seeds), "keys": keys, "meta": fe.meta}
    return write_checked("faithfulness", tensors, card, folder)


def load_faithfulness(folder: str | Path | None = None) -> Faithfulness:
    """The shipped faithfulness scores (sha256 checked before anything is decoded)."""
    card, tensors = read_checked("faithfulness", folder, COMMAND)
    scores = {k: {m: tensors[f"{i}/{m}"] for m in MODES} for i, k in enumerate(card["keys"])}
    return Faithfulness(scores, tensors["image_index"], tensors["target_class"],
                        tuple(card["seeds"]), card["meta"])


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: measure and write the faithfulness files."""
    ap = argparse.ArgumentParser(description="Deletion and insertion per layer, every seed.")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--images", type=int, default=N_IMAGES)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--out", default=None, help="output folder (default: the data folder)")
    args = ap.parse_args(argv)
    fe = measure_faithfulness(args.seeds, args.images, args.steps)
    card = save_faithfulness(fe, args.out)
    print(f"{len(card['keys'])} maps x {len(fe.seeds)} seeds x {len(fe.image_index)} pairs, "
          f"{fe.meta['steps']} steps, in {fe.meta['seconds']:.0f} s; sha256 "
          f"{card['sha256'][:16]}...")


if __name__ == "__main__":
    main()
