"""Tests for blastcell.parallel: the one process pool, ordered, lazy and clean on errors."""

from __future__ import annotations

import functools
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pool import WORKER_MODULES

from blastcell import parallel


def square_slowly(delay: float, n: int) -> int:
    """n squared, later for the early items: out-of-order completion, in-order results."""
    time.sleep(delay * (5 - n % 5))
    return n * n


def pid_of(_item: int) -> int:
    return os.getpid()


def fail_on_odd(n: int) -> int:
    if n % 2:
        raise ValueError(f"item {n} is odd")
    return n


def touch_or_fail(folder: Path, n: int) -> int:
    """Write a file named after n, after a while; fail at once on 3."""
    if n == 3:
        raise OSError("item 3 failed")
    time.sleep(0.05)
    (folder / str(n)).touch()
    return n


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_come_back_in_input_order(workers):
    task = functools.partial(square_slowly, 0.01)
    assert list(parallel.map_ordered(task, range(12), workers=workers)) == [
        n * n for n in range(12)
    ]


def test_one_worker_runs_in_this_process_and_more_in_others():
    assert set(parallel.map_ordered(pid_of, range(4), workers=1)) == {os.getpid()}
    pids = set(parallel.map_ordered(pid_of, range(8), workers=2))
    assert pids
    assert os.getpid() not in pids
    assert len(pids) <= 2


def test_zero_workers_is_one_per_cpu_core():
    assert parallel.processes(0) == (os.cpu_count() or 1)
    assert parallel.processes(3) == 3
    assert list(parallel.map_ordered(abs, [-1, 2, -3], workers=0)) == [1, 2, 3]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_first_error_in_input_order_is_raised(workers):
    results = parallel.map_ordered(fail_on_odd, range(8), workers=workers)
    assert next(results) == 0
    with pytest.raises(ValueError, match=r"^item 1 is odd$"):
        next(results)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_error_reading_the_input_comes_after_the_items_before_it(workers):
    def items() -> Iterator[int]:
        yield from (0, 1, 2)
        raise KeyError("the input broke")

    with pytest.raises(ValueError, match="item 1"):  # item 1's error, not the input's
        list(parallel.map_ordered(fail_on_odd, items(), workers=workers))

    def even_items() -> Iterator[int]:
        yield from (0, 2, 4)
        raise KeyError("the input broke")

    with pytest.raises(KeyError, match="the input broke"):
        list(parallel.map_ordered(fail_on_odd, even_items(), workers=workers))


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_input_is_read_at_most_look_ahead_items_ahead(workers):
    read = 0

    def items() -> Iterator[int]:
        nonlocal read
        for n in range(40):
            read += 1
            yield n

    in_flight = []  # items read whose result was not handed back, counting the one just handed
    for handed_back, _ in enumerate(parallel.map_ordered(abs, items(), workers=workers), 1):
        in_flight.append(read - handed_back + 1)
    assert read == 40
    if workers == 1:
        assert set(in_flight) == {1}  # one at a time
    else:  # bounded, whatever the length of the input, and the workers kept busy
        assert max(in_flight) == parallel.LOOK_AHEAD * workers


def test_the_pool_is_shut_down_on_error_and_nothing_runs_afterwards(tmp_path):
    task = functools.partial(touch_or_fail, tmp_path)
    with pytest.raises(OSError, match="item 3 failed"):
        list(parallel.map_ordered(task, range(40), workers=2))
    assert multiprocessing.active_children() == []  # the workers are gone
    written = {p.name for p in tmp_path.iterdir()}
    assert {"0", "1", "2"} <= written
    assert len(written) < 39  # the items queued were dropped
    time.sleep(0.2)
    assert {p.name for p in tmp_path.iterdir()} == written


def test_stopping_early_shuts_the_pool_down(tmp_path):
    task = functools.partial(touch_or_fail, tmp_path)
    results = parallel.map_ordered(task, range(2, -1, -1), workers=2)
    assert next(results) == 2
    results.close()
    assert multiprocessing.active_children() == []


def test_the_worker_modules_are_found():
    # the forkserver of each test process preloads them (conftest); the library maps in three
    assert {"blastcell.augment", "blastcell.copies", "blastcell.synthesize"} <= set(WORKER_MODULES)


@pytest.mark.parametrize("module", WORKER_MODULES)
def test_the_modules_workers_import_load_no_matplotlib(module):
    # Worker processes import these (forkserver preload): they must stay light.
    code = f"import sys, {module}; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
