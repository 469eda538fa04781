"""Shipped weights: safetensors files with a JSON model card, verified before loading.

Each shipped model ``<name>`` is two files in the data folder (``data/`` at the repository
root, or ``$GRADCAM_EDU_DATA``)::

    data/<name>.safetensors   the state_dict (safetensors: no pickle, no code execution)
    data/<name>.json          the model card: architecture + constructor kwargs, seeds,
                              epochs, training time, torch version, held-out scores, and
                              the sha256 of the .safetensors file

``load_model(name)`` reads the card, hashes the weight file's bytes and compares them to the
card's ``sha256`` *before* deserialising anything, then builds the architecture named in the
card and loads the weights strictly.

A card is data and never chooses code to run: its ``architecture`` must be a name of the
registry :data:`ARCHITECTURES` (``"resnet18_narrow"``, ``"plain_cnn"``, ``"truncated_resnet"``;
more with :func:`register_architecture`) and its ``kwargs`` a JSON object. Anything else is
refused with a ``ValueError`` naming the card file before any builder is called. A truncated
ResNet's card names its base architecture (``kwargs["base_architecture"]``) in the same
registry.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import nn

from . import models
from .truncate import TruncatedResNet, truncate

__all__ = [
    "ARCHITECTURES",
    "ChecksumMismatchError",
    "architecture",
    "build_truncated",
    "available_models",
    "data_dir",
    "load_model",
    "model_card",
    "register_architecture",
    "save_model",
    "sha256_file",
]


class ChecksumMismatchError(RuntimeError):
    """A weight file whose sha256 differs from its model card's."""


def build_truncated(base_architecture: str, base_kwargs: dict, after: str,
                    head: str = "probe", num_classes: int | None = None) -> TruncatedResNet:
    """The builder of architecture ``"truncated_resnet"`` (a shipped probe's card).

    Builds the registered ``base_architecture`` with ``base_kwargs``, untrained, and cuts it
    after ``after`` (:func:`gradcam_edu.truncate.truncate`): the weights (body and head) come
    from the file.
    """
    base = architecture(base_architecture, "base_architecture")
    kwargs = _json_object(base_kwargs, "base_kwargs")
    return truncate(base(**kwargs), after, head=head, num_classes=num_classes)


#: Architecture name (as written in a card) -> builder called with the card's ``kwargs``.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet18_narrow": models.resnet18_narrow,
    "plain_cnn": models.plain_cnn,
    "truncated_resnet": build_truncated,
}


def register_architecture(name: str, builder: Callable[..., nn.Module]) -> None:
    """Make ``name`` usable as a card's ``architecture``: ``builder(**card["kwargs"])``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name: expected a non-empty str, got {name!r}")
    if not callable(builder):
        raise TypeError(f"builder: expected a callable returning an nn.Module, got "
                        f"{type(builder).__name__}")
    ARCHITECTURES[name] = builder


def architecture(name: object, field: str = "architecture") -> Callable[..., nn.Module]:
    """The registered builder of ``name``; ``ValueError`` naming ``field``, the name and the
    registered names otherwise (nothing is imported or called)."""
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise ValueError(f"{field}: unknown architecture {name!r}; registered: "
                         f"{sorted(ARCHITECTURES)} (a card names a registered architecture, "
                         "never code to import; add one with register_architecture)")
    return ARCHITECTURES[name]


def _json_object(kwargs: object, field: str) -> dict:
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"{field}: expected a JSON object of keyword arguments, got "
                         f"{type(kwargs).__name__}")
    return kwargs


def _checked_builder(arch: object, kwargs: object, where: str) -> Callable[[], nn.Module]:
    """Check a card's architecture and kwargs (and a nested ``base_architecture`` /
    ``base_kwargs``) against the registry; return a call that builds the model."""
    try:
        builder = architecture(arch)
        kwargs = _json_object(kwargs, "kwargs")
        if "base_architecture" in kwargs:
            architecture(kwargs["base_architecture"], "kwargs.base_architecture")
            _json_object(kwargs.get("base_kwargs", {}), "kwargs.base_kwargs")
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return lambda: builder(**kwargs)


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The folder of shipped weights: ``override``, else ``$GRADCAM_EDU_DATA``, else the
    repository's ``data/``."""
    if override is not None:
        return Path(override)
    env = os.environ.get("GRADCAM_EDU_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "data"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _paths(name: str, folder: Path) -> tuple[Path, Path]:
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def available_models(data: str | os.PathLike | None = None) -> list[str]:
    """Sorted names of the models with a model card in the data folder (a JSON file with a
    ``sha256`` and an ``architecture``; other JSON files there, such as the evidence's card,
    are not models)."""
    folder = data_dir(data)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json")
                  if {"sha256", "architecture"} <= set(_read_json_or_empty(p)))


def _read_json_or_empty(path: Path) -> dict:
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def model_card(name: str, data: str | os.PathLike | None = None) -> dict:
    """The model card (a dict) of ``name``. Raises ``FileNotFoundError`` naming the card file
    when it is missing, ``ValueError`` listing the available names for an unknown name."""
    folder = data_dir(data)
    weights_path, card_path = _paths(name, folder)
    if not card_path.is_file():
        if weights_path.is_file():
            raise FileNotFoundError(
                f"model card {card_path} is missing: {weights_path} cannot be verified, so it "
                "is not loaded"
            )
        raise ValueError(
            f"unknown model {name!r} in {folder}; available: {available_models(folder)}"
        )
    try:
        card = json.loads(card_path.read_text())
    except ValueError as e:
        raise ValueError(f"model card {card_path} is not valid JSON: {e}") from e
    if not isinstance(card, dict):
        raise ValueError(f"model card {card_path} is not a JSON object")
    for key in ("architecture", "kwargs", "sha256"):
        if key not in card:
            raise ValueError(f"model card {card_path} lacks the field {key!r}")
    return card


def _rebuild_command(card: dict, name: str) -> str:
    """The command a card records for rebuilding its weights (training or probe section)."""
    for section in ("training", "probe"):
        command = card.get(section, {}).get("command") if isinstance(card.get(section),
                                                                      dict) else None
        if isinstance(command, str):
            return command
    return f"python -m gradcam_edu.train --only {name}"


def load_model(name: str, data: str | os.PathLike | None = None) -> nn.Module:
    """The shipped model ``name`` (e.g. "resnet18-shapes", "plaincnn-shapes") in eval mode.

    The card's ``probabilities`` ("sigmoid" for the multi-label shapes models) becomes the
    model's ``probabilities`` attribute, read by :func:`gradcam_edu.models.probability_kind`.
    The weight file's sha256 is checked against the card before it is deserialised:
    ``ChecksumMismatchError`` if it differs, ``FileNotFoundError`` (naming the file) if the
    weights or the card are missing, ``ValueError`` listing available names if unknown.
    """
    card = model_card(name, data)
    weights_path, card_path = _paths(name, data_dir(data))
    build = _checked_builder(card["architecture"], card["kwargs"], f"model card {card_path}")
    if not weights_path.is_file():
        raise FileNotFoundError(
            f"weight file {weights_path} is missing (its card exists); rebuild it with "
            f"`{_rebuild_command(card, name)}`"
        )
    blob = weights_path.read_bytes()
    got = hashlib.sha256(blob).hexdigest()
    if got != card["sha256"]:
        raise ChecksumMismatchError(
            f"weight file {weights_path} was altered or corrupted: expected sha256 "
            f"{card['sha256']}, got {got}"
        )
    kind = card.get("probabilities")
    if kind is not None and kind not in models.PROBABILITY_KINDS:
        raise ValueError(f"model card {card_path}: probabilities must be one of "
                         f"{models.PROBABILITY_KINDS}, got {kind!r}")
    state = _st_load(blob)  # deserialise the very bytes that were verified
    model = build()
    model.load_state_dict(state, strict=True)
    if kind is not None:
        model.probabilities = kind          # the card says how logits become probabilities
    return model.eval()


def save_model(
    model: nn.Module, name: str, card_extra: dict, data: str | os.PathLike | None = None
) -> dict:
    """Write ``<name>.safetensors`` and ``<name>.json``; return the card.

    ``card_extra`` must hold ``architecture`` (a name of :data:`ARCHITECTURES`) and ``kwargs``
    (the builder's keyword arguments, a JSON object); anything else in it (seeds, epochs,
    scores...) is copied into the card. The card gets ``name``, ``probabilities`` (the model's
    :func:`gradcam_edu.models.probability_kind`: "sigmoid" or "softmax"), ``torch_version``,
    ``format`` and the file's ``sha256``. The builder is checked to rebuild a model with
    exactly these state_dict keys and shapes.
    """
    for key in ("architecture", "kwargs"):
        if key not in card_extra:
            raise ValueError(f"card_extra needs {key!r}")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    build = _checked_builder(card_extra["architecture"], card_extra["kwargs"], "card_extra")
    rebuilt = build().state_dict()
    if {k: tuple(v.shape) for k, v in rebuilt.items()} != {
        k: tuple(v.shape) for k, v in state.items()
    }:
        raise ValueError("the architecture and kwargs in card_extra do not rebuild this model")
    blob = _st_save(state, metadata={"name": name})
    folder = data_dir(data)
    folder.mkdir(parents=True, exist_ok=True)
    weights_path, card_path = _paths(name, folder)
    weights_path.write_bytes(blob)
    card = {"name": name, "probabilities": models.probability_kind(model), **card_extra}
    card.update(
        format="safetensors",
        weights_file=weights_path.name,
        torch_version=torch.__version__,
        sha256=hashlib.sha256(blob).hexdigest(),
    )
    card_path.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return card
