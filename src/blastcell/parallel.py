"""The pipeline's one process pool: an ordered, lazy map over worker processes.

The synthesize and augment stages render or augment images in worker processes with
`map_ordered`. Whatever the number of workers, the results come back in input order and errors
are raised in input order, as in one process, so the files written do not depend on it. The
input is read lazily in this process, a few items ahead of the results handed back, so memory
does not grow with the data set.

The workers exit when the process that started them dies, however it dies (`kill -9` of a
stage included): each watches it from a thread (`lifetime.exit_with`). The forkserver, not
that process, is a worker's parent, and a worker holds both ends of its task queue's pipe, so
it would otherwise wait for tasks forever. The forkserver and multiprocessing's resource
tracker then exit by themselves, since they wait only for the processes that share their
pipes, the workers among them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import TypeVar

from blastcell import lifetime

Item = TypeVar("Item")
Result = TypeVar("Result")

LOOK_AHEAD = 2  # items in flight per worker process

_END = object()


def processes(workers: int) -> int:
    """The number of processes that `workers` means: 0 is one per CPU core."""
    return workers or os.cpu_count() or 1


def _context(function: Callable[..., object]) -> BaseContext:
    """forkserver (else spawn), not fork: the caller may hold threads (e.g. TensorFlow's)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Have the server import the function's module (numpy, scikit-image, ...) once, before it
    # forks the workers, rather than each worker import it. This is the process's one
    # forkserver: the list applies only if none was started yet, and keeps its default,
    # "__main__" (the script: workers re-run its imports, so a stage script imports what only
    # this process needs, e.g. matplotlib, inside its function).
    module = getattr(function, "func", function).__module__  # a functools.partial's function
    context.set_forkserver_preload(["__main__", module])
    return context


def map_ordered(
    function: Callable[[Item], Result], items: Iterable[Item], *, workers: int
) -> Iterator[Result]:
    """Yield `function(item)` for each of `items`, in order, computed by `workers` processes.

    `workers` 0 means one per CPU core; with one, everything runs in this process. `items` is
    read lazily in this process, at most LOOK_AHEAD * workers items ahead of the last result
    handed back. `function` and the items must be picklable (`function` a module-level function
    or a `functools.partial` of one) for more than one worker. An error raised by `function`
    comes back as it was raised, and the one of the first item in input order comes first; an
    error raised while reading `items` comes after those of the items before it. On an error, or
    when the caller stops early, the items queued are dropped and the pool waits for those
    running, so nothing is done after this generator is finished with.
    """
    count = processes(workers)
    if count == 1:
        for item in items:
            yield function(item)
        return
    pool = ProcessPoolExecutor(
        count,
        mp_context=_context(function),
        initializer=lifetime.exit_with,
        initargs=(os.getpid(),),
    )
    try:
        pending: deque[Future[Result]] = deque()
        source = iter(items)
        while True:
            try:
                item = next(source, _END)
            except Exception:
                for future in pending:  # an earlier item's error comes first
                    future.result()
                raise
            if item is _END:
                break
            pending.append(pool.submit(function, item))
            if len(pending) >= LOOK_AHEAD * count:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
