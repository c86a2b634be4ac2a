"""Processes that a stage starts end when it does, however it ends (`kill -9` included).

A stage's pool workers (`blastcell.parallel`) each watch the process that started them from a
thread, and exit as soon as it has gone: nothing is left computing for nobody, holding memory.
"""

from __future__ import annotations

import os
import select
import threading
import time

POLL_SECONDS = 0.5  # how often to check that the process lives, where it cannot be waited on


def wait_for_exit(pid: int) -> None:
    """Return once the process `pid` has ended (at once if it has already)."""
    try:
        fd = os.pidfd_open(pid)  # Linux 5.3+: readable once the process has ended
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd here: poll
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:  # alive, though not ours to signal
                pass
            time.sleep(POLL_SECONDS)
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def _exit_after(pid: int) -> None:
    wait_for_exit(pid)
    os._exit(1)  # at once: the results have nobody to go to


def exit_with(pid: int) -> None:
    """End this process as soon as the process `pid` ends (a pool worker's initializer)."""
    threading.Thread(target=_exit_after, args=(pid,), name="exit-with-parent", daemon=True).start()
