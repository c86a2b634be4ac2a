"""The wait on a process that ends (`blastcell.lifetime`); tests/test_kills.py kills stages."""

import os
import subprocess
import sys
import threading
import time

import pytest

from blastcell import lifetime


@pytest.mark.parametrize("pidfd", [True, False])
def test_wait_for_exit_returns_once_the_process_ends(monkeypatch, pidfd):
    if not pidfd:  # the fallback where there is no pidfd_open: polling
        monkeypatch.delattr(os, "pidfd_open", raising=False)
        monkeypatch.setattr(lifetime, "POLL_SECONDS", 0.05)
    elif not hasattr(os, "pidfd_open"):
        pytest.skip("no os.pidfd_open here")
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    waiter = threading.Thread(target=lifetime.wait_for_exit, args=(process.pid,), daemon=True)
    start = time.monotonic()
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # still running
    process.wait()  # reaped: a zombie still answers os.kill(pid, 0)
    waiter.join(5)
    assert not waiter.is_alive()
    assert time.monotonic() - start < 5
    lifetime.wait_for_exit(process.pid)  # gone already: returns at once
