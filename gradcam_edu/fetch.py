"""Opt-in download of torchvision's ImageNet weights into the local torch hub cache.

    python -m gradcam_edu fetch resnet18            # or: make fetch MODEL=resnet18
    from gradcam_edu.fetch import fetch_imagenet_weights
    path = fetch_imagenet_weights("resnet18")   # <hub dir>/checkpoints/resnet18-f37072fd.pth

This is the one place of the package that downloads, and only when called (never by the tests'
default paths, the notebooks or ``make test``). Afterwards
``models.torchvision_resnet(arch, weights="imagenet")``, which reads the local cache and never
downloads, finds the file: both use ``torch.hub.get_dir()/checkpoints/<file name of the URL>``.

The download is torch's own (``torch.hub.load_state_dict_from_url(url, check_hash=True)``):
a progress bar on stderr, the bytes written to ``<name>.<uuid>.partial`` next to the
destination and moved there only when complete and when their sha256 begins with the hash
prefix in the file name (``resnet18-f37072fd.pth``: ``f37072fd``); the partial file is removed
on any failure. The file is then read back with ``torch.load(..., weights_only=True)``.

Bounded time: torch opens the URL without a timeout of its own, so the process's default
socket timeout is set to ``timeout`` during the download (and restored after): a server that
sends nothing for ``timeout`` seconds, at the connection or at any read, ends it with a
:class:`FetchError`. Other threads that open sockets meanwhile get the same default.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import socket
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import torch

from .models import IMAGENET_ARCHS, imagenet_weights

__all__ = ["DEFAULT_TIMEOUT_S", "FetchError", "fetch_imagenet_weights", "hash_prefix"]

DEFAULT_TIMEOUT_S = 30.0
"""Seconds without a byte from the server before a download gives up."""


class FetchError(RuntimeError):
    """A download that did not succeed: offline, no answer in time, an HTTP error, a file
    whose hash does not match. Nothing is left in the cache folder."""


def hash_prefix(url: str) -> str:
    """The sha256 prefix that torch checks, from ``url``'s file name (``torch.hub.HASH_REGEX``:
    ``resnet18-f37072fd.pth`` -> ``"f37072fd"``); ``ValueError`` when it has none (at least
    8 hex digits)."""
    name = Path(urlsplit(url).path).name
    found = torch.hub.HASH_REGEX.search(name)
    if not found or len(found.group(1)) < 8:
        raise ValueError(f"url: the file name {name!r} carries no sha256 prefix (expected "
                         "NAME-<at least 8 hex digits>.EXT, as torchvision's weight files do)")
    return found.group(1)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """The process's default socket timeout set to ``seconds``, restored on exit."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def _network_error(err: OSError, url: str, timeout: float) -> FetchError:
    """A network failure of the download as a one-line :class:`FetchError`."""
    host = urlsplit(url).netloc or url
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(err, urllib.error.HTTPError):
        return FetchError(f"{host} answered HTTP {err.code} ({err.reason}) for {url}")
    if isinstance(reason, TimeoutError):
        return FetchError(f"no answer from {host} within {timeout:g} s (a socket timeout); "
                          "check the network, or allow a longer timeout (--timeout)")
    return FetchError(f"cannot reach {host}, or the connection broke ({reason}); are you "
                      "offline? Nothing was saved; run it again once connected")


def fetch_imagenet_weights(arch: str = "resnet18", *, timeout: float = DEFAULT_TIMEOUT_S,
                           progress: bool = True, url: str | None = None) -> Path:
    """Download ``arch``'s IMAGENET1K_V1 weights from torchvision's URL into
    ``torch.hub.get_dir()/checkpoints`` (see the module docstring) and return the file's path;
    a file already there whose sha256 matches is kept (no download).

    ``arch``: one of :data:`gradcam_edu.models.IMAGENET_ARCHS` (``ValueError`` listing them
    otherwise). ``timeout``: seconds the server may stay silent (> 0). ``progress``: torch's
    progress bar on stderr. ``url``: another file to fetch instead of torchvision's, for tests
    only; its name must carry its sha256 prefix (:func:`hash_prefix`) and it lands under that
    name. :class:`FetchError` when offline, on no answer within ``timeout``, on an HTTP
    error, when the hash does not match, or when a file of that name already in the cache
    does not match its hash (delete it and fetch again).
    """
    if arch not in IMAGENET_ARCHS:
        raise ValueError(f"arch: unknown architecture {arch!r}; known: "
                         f"{', '.join(IMAGENET_ARCHS)}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout: expected a number of seconds > 0, got {timeout!r}")
    url = imagenet_weights(arch).url if url is None else str(url)
    prefix = hash_prefix(url)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / Path(urlsplit(url).path).name
    if path.is_file():
        digest = _sha256(path)
        if digest.startswith(prefix):
            return path
        raise FetchError(f"{path} is already in the cache but its sha256 {digest[:12]}... "
                         f"does not begin with {prefix}: a broken or foreign file; delete it "
                         "and fetch again")
    try:
        with _socket_timeout(float(timeout)):
            torch.hub.load_state_dict_from_url(url, model_dir=str(folder), map_location="cpu",
                                               progress=progress, check_hash=True,
                                               weights_only=True)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise _network_error(err, url, timeout) from None
    except Exception as err:
        if path.is_file():  # downloaded and hash-checked, yet torch.load refuses it
            path.unlink()
            raise FetchError(f"{url} was downloaded but is not a weights file that torch.load "
                             f"reads with weights_only=True ({type(err).__name__}); it was "
                             "removed") from None
        if isinstance(err, RuntimeError) and "invalid hash value" in str(err):
            raise FetchError(f"the file downloaded from {url} does not match its hash: its "
                             f"sha256 does not begin with {prefix} ({err}); nothing was "
                             "saved") from None
        raise  # e.g. the cache folder is not writable: the error names it
    return path
