"""The run folder's lock: one writer at a time, named by its pid, and gone with its process."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from slimkit.utils.folder_lock import LOCK_FILE, FolderLocked, folder_lock
from slimkit.utils.run_folder import RunFolder, RunFolderError

# another process holding the lock the way slimkit does: flock on the lock file, its pid inside
HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys, time
    fd = os.open(os.path.join(sys.argv[1], ".slimkit.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    print("locked", flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def holder(tmp_path):
    """A second process holding tmp_path's lock until the test kills it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_process_is_refused_with_the_holders_pid_until_it_dies(tmp_path, holder):
    with pytest.raises(RunFolderError, match=f"in use by another slimkit run .pid {holder.pid}"):
        with RunFolder(tmp_path).claimed():
            pass
    holder.send_signal(signal.SIGKILL)  # the kernel drops a dead process's flock: no stale lock
    holder.wait()
    with RunFolder(tmp_path).claimed():
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_another_open_of_the_lock_file_in_this_process_conflicts(tmp_path):
    import fcntl

    with folder_lock(tmp_path):
        fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_the_lock_is_reentrant_within_a_process_and_released_at_the_end(tmp_path):
    import fcntl

    with folder_lock(tmp_path):
        with folder_lock(tmp_path / "."):  # e.g. distill's folder, then its train_run on the same folder
            pass
        fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR)
        with pytest.raises(BlockingIOError):  # still held after the inner block
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released after the outer one
    os.close(fd)


def test_a_holder_that_has_not_written_its_pid_yet_is_still_named(tmp_path):
    import fcntl

    fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(FolderLocked, match="has not written its pid"):
            with folder_lock(tmp_path):
                pass
    finally:
        os.close(fd)
