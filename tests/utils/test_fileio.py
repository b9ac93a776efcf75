import errno
import io
import os
import stat

import pytest
import torch

from slimkit.utils import fileio
from slimkit.utils.fileio import atomic_copy, atomic_torch_save, atomic_write, atomic_write_text


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")

    def broken(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_copy_copies_the_bytes_and_leaves_no_temp_file(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(bytes(range(256)))
    atomic_copy(source, tmp_path / "out" / "copy.bin")
    assert (tmp_path / "out" / "copy.bin").read_bytes() == bytes(range(256))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["copy.bin"]


# full disk: the error names the file and keeps the previous version


@pytest.mark.parametrize("write_error", [
    lambda: OSError(errno.ENOSPC, "No space left on device"),
    lambda: OSError(errno.EDQUOT, "Disk quota exceeded"),
    # safetensors (Rust) reports it in its message only
    lambda: RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
])
def test_a_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path, write_error):
    target = tmp_path / "checkpoint.pt"
    atomic_write_text(target, "epoch 3")

    def broken(tmp):
        open(tmp, "w").write("half")
        raise write_error()

    with pytest.raises(OSError, match=f"while writing {target}; the previous checkpoint.pt is intact") as info:
        atomic_write(target, broken)
    assert info.value.errno in (errno.ENOSPC, errno.EDQUOT)
    assert target.read_text() == "epoch 3"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_full_disk_during_torch_save_says_so(tmp_path, monkeypatch):
    """torch.save writes through a Python file, whose OSError says what happened (torch's own
    writer turns it into "unexpected pos ... vs ...")."""
    target = tmp_path / "checkpoint.pt"

    class FullFile(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio, "open", lambda path, mode: FullFile(path, "w"), raising=False)
    with pytest.raises(OSError, match=f"no space left on device while writing {target}; checkpoint.pt was not written"):
        atomic_torch_save(target, {"w": torch.zeros(1000)})
    assert list(tmp_path.iterdir()) == []


def test_other_write_errors_pass_through_unchanged(tmp_path):
    def broken(tmp):
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output error"):
        atomic_write(tmp_path / "x", broken)


# permissions and durability

@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_users_umask_not_mkstemps_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "metrics.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), (tmp_path / "metrics.json").exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write_text(tmp_path / "metrics.json", "{}")
    assert synced == [(False, False), (True, True)]  # the file's data before the rename, the folder after


def test_torch_checkpoints_still_load(tmp_path):
    path = atomic_torch_save(tmp_path / "checkpoint.pt", {"w": torch.arange(5)})
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(5))
