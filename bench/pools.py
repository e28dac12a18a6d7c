"""Thread pools that let Ctrl-C through.

`with ThreadPoolExecutor(...)` joins its threads on the way out, also when a KeyboardInterrupt is
on its way: a Ctrl-C would wait until every queued task had run (every training cell trained,
every queued request sent and paid for). Here an interrupt cancels what has not started and
leaves the running threads behind; the CLI then stops the cluster and exits 130.
"""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


@contextmanager
def interruptible_pool(max_workers: int, name: str) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
