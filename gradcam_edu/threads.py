"""One place that sets torch's thread count for a block of code, and puts it back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (None: unchanged), then restore the count.

    Small tensor arithmetic (maps, metrics) runs faster on one thread, and is immune to busy
    cores: in a parallel region every op waits for every thread.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"threads: expected a positive int or None, got {n!r}")
    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
