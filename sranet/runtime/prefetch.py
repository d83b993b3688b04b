"""Reading ahead: the next inputs read on one background thread while the caller works on the current one.

``read_ahead(read, items, depth)`` is what ``sranet.runtime.study.predict_cases`` (``sranet predict --prefetch``)
uses: file reads, decompression and numpy release the GIL, and so does the inference backend, so reading the next
study overlaps inferring this one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
_END = object()


def read_ahead(read: Callable[[T], R], items: Iterable[T], depth: int) -> Iterator[tuple[T, R]]:
    """``(item, read(item))`` in input order; with ``depth`` > 0 one background thread runs ``read`` on up to ``depth``
    items ahead of the one handed out, in order (so ``read`` may keep state from one item to the next). Closing the
    iterator cancels what was not started and waits for the read in progress; an exception raised by ``read`` comes
    out where that item would have."""
    if depth == 0:
        for item in items:
            yield item, read(item)
        return
    pending = iter(items)
    window: deque = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sranet-prefetch") as pool:
        try:
            for item in pending:
                window.append((item, pool.submit(read, item)))
                if len(window) > depth:
                    break
            while window:
                item, future = window.popleft()
                result = future.result()
                following = next(pending, _END)
                if following is not _END:  # keep the reader busy while the caller works on this item
                    window.append((following, pool.submit(read, following)))
                yield item, result
        finally:
            for _, future in window:
                future.cancel()


__all__ = ["read_ahead"]
