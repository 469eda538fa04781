"""The measurements behind the verdict: every setting of the claims' factorial designs, scored
with Grad-CAM on the same (image, class) pairs, for several independently trained models.

A *setting* is a dict of factors::

    {"depth": "full" | "cut", "head": "random fc" | "trained fc" | "probe",
     "layer": "layer4.1.conv2", "skip_gradient": "on" | "off", "method": "gradcam"}

Its model is the seed's ``resnet18-shapes`` (``resnet18-shapes-seed<N>`` for seed N > 0)
made into the variant the factors name (:mod:`gradcam_edu.variants`; always
:func:`~gradcam_edu.variants.with_sum_points`, which changes no value and adds the hook point
``layer4.1.pre_relu``), ``depth="cut"`` cuts it after ``layer4.0``
(:func:`gradcam_edu.truncate.truncate`), ``head="probe"`` uses the seed's shipped linear probe
of that depth (:mod:`gradcam_edu.probes`: ``...-cut-layer4.0-probe`` and, for the full
depth, ``...-cut-layer4.1-probe``). Each setting gets the per-pair scores of
:func:`gradcam_edu.scoreboard.scoreboard` (:data:`~gradcam_edu.scoreboard.METRICS`).

Scoring 3 seeds x 128 images takes minutes, so the scores are computed once and shipped:

    python -m gradcam_edu.evidence          # -> data/evidence.safetensors + evidence.json

:func:`load_evidence` reads them back (safetensors: no code runs; the sha256 in the JSON
card is checked first), and ``tests/test_evidence.py`` recomputes a sample from the models
and compares, so the file cannot drift from the code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from . import probes, weights
from .sanity import randomisation_test
from .scoreboard import METRICS, scoreboard
from .shapes import shapes_sample
from .threads import torch_threads
from .truncate import truncate
from .variants import random_head, with_sum_points, without_skip_gradient

__all__ = ["DESIGN", "FACTORS", "METHODS", "SEEDS", "Evidence", "load_evidence", "main", "measure",
           "model_name", "setting", "setting_key"]

SEEDS = (0, 1, 2)
"""Training seeds of ``resnet18-shapes`` (seed 0 is the model the course uses throughout)."""
FACTORS = ("depth", "head", "layer", "skip_gradient", "method")
N_IMAGES = 128
HEAD_SEED = 0  # the post's random fc, the same weights at both depths
CUT = "layer4.0"
SANITY_IMAGES = 32
SANITY_STAGES = ("fc", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1")
SANITY_METHODS = ("gradient", "guided_backprop", "gradcam")
SANITY_LAYER = "layer4.1"
MAX_FILE_BYTES = 20 * 2**20


def model_name(seed: int) -> str:
    """The shipped model of training ``seed``: ``resnet18-shapes`` or ``...-seed<N>``."""
    return "resnet18-shapes" if seed == 0 else f"resnet18-shapes-seed{seed}"


def setting(depth: str = "full", head: str = "trained fc", layer: str = "layer4.1",
            skip_gradient: str = "on", method: str = "gradcam") -> dict[str, str]:
    """A setting as a dict of the factors (defaults: Grad-CAM on the trained full model)."""
    return {"depth": depth, "head": head, "layer": layer, "skip_gradient": skip_gradient,
            "method": method}


def setting_key(s: Mapping[str, str]) -> str:
    """``"full|trained fc|layer4.1|on"``: the setting's values in :data:`FACTORS` order."""
    missing = [f for f in FACTORS if f not in s]
    if missing:
        raise ValueError(f"setting: missing factor(s) {missing}; expected {FACTORS}")
    return "|".join(s[f] for f in FACTORS)


# The settings measured, grouped by model variant (depth, head, skip_gradient): layers per variant.
_INSIDE = ["layer4.1.conv2", "layer4.1.bn2", "layer4.1.pre_relu", "layer4.1"]
DESIGN: dict[tuple[str, str, str], list[str]] = {
    ("full", "trained fc", "on"): ["conv1", "layer1.1", "layer2.1", "layer3.1", "layer4.0.conv1",
                                   "layer4.0", *_INSIDE],
    ("full", "random fc", "on"): ["conv1", "layer4.0.conv1", "layer4.0", *_INSIDE],
    ("full", "probe", "on"): ["layer4.0.conv1", "layer4.0"],
    ("full", "trained fc", "off"): ["conv1", "layer3.1", "layer4.0.conv1", "layer4.0",
                                    "layer4.1.conv2"],
    ("cut", "trained fc", "on"): ["layer4.0.conv1", "layer4.0"],
    ("cut", "random fc", "on"): ["layer4.0.conv1", "layer4.0"],
    ("cut", "probe", "on"): ["layer4.0.conv1", "layer4.0"],
}
"""Every (depth, head, skip gradient) variant and the layers scored on it: the factorial of
claim (c) (head x hook point x depth), the hook points inside ``layer4.1`` (claim a), the
skip-gradient-off variant where skip gradients arrive, and conv1 vs ``layer4.1.conv2`` under
both heads (claim b)."""
METHODS = {("full", "trained fc", "on"): ("gradcam", "hirescam", "layercam")}
"""Methods scored per variant (Grad-CAM where not listed): the trained full model also gets
HiResCAM and LayerCAM, for the published findings that notebook 05 sets beside ours."""


def variant(base: nn.Module, seed: int, depth: str, head: str, skip: str) -> nn.Module:
    """The model of one (depth, head, skip gradient) variant of training ``seed``."""
    if head == "probe":
        after = CUT if depth == "cut" else "layer4.1"
        model = probes.load_truncated(probes.probe_name(after, base=model_name(seed)))
    else:
        model = base if depth == "full" else truncate(base, CUT, head="original")
        if head == "random fc":
            model = random_head(model, HEAD_SEED)
    if skip == "off":
        model = without_skip_gradient(model)
    return with_sum_points(model).eval()


@dataclass
class Evidence:
    """Per-pair scores of every setting for every seed.

    ``scores[setting_key][metric]``: ``(S, P)`` float (S seeds, P pairs; NaN where a metric
    does not apply, e.g. target share on 1-object images); ``image_index``, ``target_class``
    ``(P,)``: the pairs (the same for every seed: they come from the images' true classes);
    ``seeds``; ``meta``: how it was made; ``baselines``: the model-free scores ``(P,)`` of the
    centre and uniform maps on the same pairs (:func:`gradcam_edu.metrics.baseline_scores`).
    """

    scores: dict[str, dict[str, torch.Tensor]]
    image_index: torch.Tensor
    target_class: torch.Tensor
    seeds: tuple[int, ...]
    meta: dict
    baselines: dict[str, torch.Tensor] = field(default_factory=dict)
    randomisation: dict[str, torch.Tensor] = field(default_factory=dict)
    """``"stage|method"`` -> ``(S, N)`` Spearman correlations of the randomisation sanity
    check (:func:`gradcam_edu.sanity.randomisation_test`, first :data:`SANITY_IMAGES` images,
    each image's first class, stages :data:`SANITY_STAGES`)."""

    def get(self, s: Mapping[str, str], metric: str) -> torch.Tensor:
        """``(S, P)`` scores of setting ``s`` for ``metric``."""
        key = setting_key(s)
        if key not in self.scores:
            raise ValueError(f"setting: {key!r} was not measured; measured: "
                             f"{sorted(self.scores)}")
        if metric not in self.scores[key]:
            raise ValueError(f"metric: expected one of {sorted(self.scores[key])}, got "
                             f"{metric!r}")
        return self.scores[key][metric]


def _randomisation(base: nn.Module, images, classes) -> dict[str, torch.Tensor]:
    rows = randomisation_test(base, images[:SANITY_IMAGES], [c[0] for c in classes[:SANITY_IMAGES]],
                              SANITY_LAYER, SANITY_METHODS, SANITY_STAGES, n_boot=1)
    return {f"{r['stage']}|{r['method']}": r["spearman"] for r in rows}


def _score_seed(seed: int, images, masks, classes, design, batch_size: int):
    base = weights.load_model(model_name(seed))
    out, pairs, baselines = {}, None, {}
    for (depth, head, skip), layers in design.items():
        model = variant(base, seed, depth, head, skip)
        methods = METHODS.get((depth, head, skip), ("gradcam",))
        board = scoreboard(model, images, masks, classes, layers, methods=methods,
                           batch_size=batch_size)
        pairs = pairs or (board.image_index, board.target_class)
        baselines = baselines or board.baselines
        for layer in layers:
            for method in methods:
                key = setting_key(setting(depth, head, layer, skip, method))
                out[key] = board.scores[(layer, method)]
    return out, pairs, baselines


def measure(seeds: Sequence[int] = SEEDS, n_images: int = N_IMAGES,
            design: Mapping[tuple[str, str, str], Sequence[str]] = DESIGN,
            batch_size: int = 16, first_image: int = 0, sanity: bool = True) -> Evidence:
    """Score every setting of ``design`` for every seed on held-out "test" images
    ``first_image .. first_image + n_images`` (:func:`gradcam_edu.shapes.shapes_sample`)."""
    if not seeds:
        raise ValueError("seeds: expected at least one training seed")
    sample = shapes_sample(first_image + n_images, split="test")
    images, masks, classes = (v[first_image:] for v in sample)
    per_seed, pairs, randomised = [], None, []
    t0 = time.perf_counter()
    with torch_threads(1):
        for seed in seeds:
            scores, pairs, baselines = _score_seed(seed, images, masks, classes, design,
                                                   batch_size)
            per_seed.append(scores)
            if sanity:
                randomised.append(_randomisation(weights.load_model(model_name(seed)), images,
                                                 classes))
    stacked = {k: {m: torch.stack([s[k][m] for s in per_seed]) for m in per_seed[0][k]}
               for k in per_seed[0]}
    meta = {"n_images": n_images, "first_image": first_image, "split": "test",
            "metrics": list(METRICS), "head_seed": HEAD_SEED,
            "models": [model_name(s) for s in seeds], "seconds": round(time.perf_counter() - t0, 1),
            "command": "python -m gradcam_edu.evidence"}
    rand = {k: torch.stack([r[k] for r in randomised]) for k in randomised[0]} if randomised \
        else {}
    return Evidence(stacked, pairs[0] + first_image, pairs[1], tuple(seeds), meta, baselines,
                    rand)


# ----------------------------------------------------------------------------- files
def write_checked(stem: str, tensors: Mapping[str, torch.Tensor], card: dict,
                  folder: str | Path | None = None) -> dict:
    """Write ``<stem>.safetensors`` (``tensors``, floats as float32, each with its own
    storage) and ``<stem>.json`` (``card`` plus the sha256 of the tensor file) to ``folder``
    (default: the data folder). Returns the card as written."""
    folder = Path(folder) if folder is not None else weights.data_dir()
    blob = st_save({k: (v.float() if v.is_floating_point() else v).clone()
                    for k, v in tensors.items()})
    card = {**card, "sha256": hashlib.sha256(blob).hexdigest()}
    (folder / f"{stem}.safetensors").write_bytes(blob)
    (folder / f"{stem}.json").write_text(json.dumps(card, indent=1) + "\n")
    return card


def read_checked(stem: str, folder: str | Path | None = None,
                 command: str = "python -m gradcam_edu.evidence",
                 ) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(card, tensors)`` written by :func:`write_checked`: both files at most
    :data:`MAX_FILE_BYTES`, the tensor file's sha256 checked against the card before anything
    is decoded (safetensors: no code runs). ``command``: how to rebuild missing files."""
    folder = Path(folder) if folder is not None else weights.data_dir()
    data_path, card_path = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    for p in (data_path, card_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing; rebuild it with `{command}`")
        if p.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"{p}: {p.stat().st_size} bytes, more than the "
                             f"{MAX_FILE_BYTES} an evidence file may have")
    card = json.loads(card_path.read_text())
    blob = data_path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != card.get("sha256"):
        raise weights.ChecksumMismatchError(f"{data_path}: sha256 {digest} differs from "
                                            f"{card_path.name}'s {card.get('sha256')}")
    return card, st_load(blob)


def save_evidence(ev: Evidence, folder: str | Path | None = None) -> dict:
    """Write ``evidence.safetensors`` (the scores) and ``evidence.json`` (keys, seeds, meta,
    sha256) to ``folder`` (default: the data folder). Returns the card."""
    tensors = {"image_index": ev.image_index, "target_class": ev.target_class,
               **{f"baseline/{k}": v for k, v in ev.baselines.items()},
               **{f"random/{k}": v for k, v in ev.randomisation.items()}}
    keys = []
    for i, (key, per_metric) in enumerate(sorted(ev.scores.items())):
        keys.append(key)
        for metric, t in per_metric.items():
            tensors[f"{i}/{metric}"] = t
    card = {"seeds": list(ev.seeds), "settings": keys, "factors": list(FACTORS),
            "meta": ev.meta}
    return write_checked("evidence", tensors, card, folder)


def load_evidence(folder: str | Path | None = None) -> Evidence:
    """The shipped measurements (see the module docstring); the sha256 of the scores file is
    checked against its JSON card before anything is decoded."""
    card, tensors = read_checked("evidence", folder)
    scores = {key: {m: tensors[f"{i}/{m}"] for m in card["meta"]["metrics"]}
              for i, key in enumerate(card["settings"])}
    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    return Evidence(scores, tensors["image_index"], tensors["target_class"],
                    tuple(card["seeds"]), card["meta"], group("baseline/"), group("random/"))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: measure and write the evidence files."""
    ap = argparse.ArgumentParser(description="Measure every setting of the verdict's designs.")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--images", type=int, default=N_IMAGES)
    ap.add_argument("--out", default=None, help="output folder (default: the data folder)")
    args = ap.parse_args(argv)
    ev = measure(args.seeds, args.images)
    card = save_evidence(ev, args.out)
    print(f"{len(card['settings'])} settings x {len(ev.seeds)} seeds x "
          f"{len(ev.image_index)} pairs in {ev.meta['seconds']:.0f} s; sha256 "
          f"{card['sha256'][:16]}...")


if __name__ == "__main__":
    main()
