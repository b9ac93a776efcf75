"""The native kernels' cache (slimkit.compressed.extension_cache): a library is loaded only from
folders and files of the current user that no one else can write, and only when it matches the
size and sha256 recorded after its build. Nothing here compiles or loads a real library: the
compiler and the importer are replaced by fakes that record what they were asked to do."""

import logging
import os
import stat
import sys
from types import SimpleNamespace

import pytest

from slimkit.compressed import extension_cache, kernels

FLAGS = (["-O3"], [])
_real_private_group = extension_cache.private_group  # the fixture below replaces it


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch):
    monkeypatch.setattr(extension_cache, "_warned", set())
    monkeypatch.setattr(extension_cache, "_private_root", None)
    # Whether the test folders' group is the user's private one depends on the machine: by
    # default, a group is someone else's too.
    monkeypatch.setattr(extension_cache, "private_group", lambda gid, uid: False)


@pytest.fixture
def builds(tmp_path, monkeypatch):
    """kernels._build with a fake compiler (writes a fake library) and a fake importer."""
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "cache"))
    calls = SimpleNamespace(compiled=[], imported=[])

    def compile_(build_dir, cflags, ldflags):
        library = build_dir / "slimkit_csr_kernels.so"
        library.write_bytes(b"\x7fELF" + bytes(range(256)) * 64)
        (build_dir / "csr_kernels.o").write_bytes(b"object")
        calls.compiled.append(build_dir)
        return SimpleNamespace(__file__=str(library), origin="compiled")

    def import_(library):
        calls.imported.append(library)
        return SimpleNamespace(__file__=str(library), origin="cache")

    monkeypatch.setattr(kernels, "_compile", compile_)
    monkeypatch.setattr(extension_cache, "import_library", import_)
    return calls


def test_a_recorded_build_is_loaded_from_the_cache(builds, tmp_path):
    assert kernels._build(*FLAGS).origin == "compiled"
    folder = builds.compiled[0]
    assert folder.parent == tmp_path / "cache" / "extensions"
    for path in (tmp_path / "cache", folder.parent, folder):
        assert _mode(path) == 0o700, path  # created private
    assert _mode(folder / extension_cache.RECORD) == 0o600
    assert kernels._build(*FLAGS).origin == "cache"
    assert builds.imported == [folder / "slimkit_csr_kernels.so"] and len(builds.compiled) == 1


@pytest.mark.parametrize("damage", ["truncate", "edit", "drop the record", "bad record"])
def test_a_damaged_library_is_never_loaded_but_rebuilt(builds, damage):
    """A build killed halfway or a truncated library (a SIGBUS in every later process) is not
    loaded: the folder is cleared and the kernels are built again."""
    kernels._build(*FLAGS)
    folder = builds.compiled[0]
    library, record = folder / "slimkit_csr_kernels.so", folder / extension_cache.RECORD
    if damage == "truncate":
        os.truncate(library, 100)
    elif damage == "edit":
        data = bytearray(library.read_bytes())
        data[50] ^= 1
        library.write_bytes(bytes(data))
    elif damage == "drop the record":
        record.unlink()
    else:
        record.write_text('{"library": "../../elsewhere.so", "size": 1, "sha256": "00"}')
    assert extension_cache.verified_library(folder) is None
    (folder / "stale.o").write_bytes(b"left over")
    assert kernels._build(*FLAGS).origin == "compiled"
    assert builds.imported == [] and builds.compiled == [folder, folder]
    assert not (folder / "stale.o").exists()  # cleared before the rebuild
    assert extension_cache.verified_library(folder) == library


@pytest.mark.parametrize("writable", [stat.S_IWGRP, stat.S_IWOTH])
@pytest.mark.parametrize("level", ["cache", "extensions", "build folder"])
def test_a_folder_others_can_write_is_refused(builds, tmp_path, caplog, writable, level):
    kernels._build(*FLAGS)
    folder = builds.compiled[0]
    target = {"cache": tmp_path / "cache", "extensions": folder.parent, "build folder": folder}[level]
    target.chmod(_mode(target) | writable)
    with caplog.at_level(logging.WARNING, logger="slimkit"):
        assert kernels._build(*FLAGS).origin == "compiled"
        kernels._build(*FLAGS)
    assert builds.imported and builds.imported[0].parent != folder  # never loaded from the shared folder
    private = builds.compiled[1]
    assert tmp_path / "cache" not in private.parents and _mode(private.parent) == 0o700
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(target) in warnings[0] and "writable by other users" in warnings[0]


def test_group_write_is_fine_when_the_group_is_yours_alone(builds, tmp_path, monkeypatch):
    """Debian/Ubuntu users have their own group and umask 002: their folders are group-writable."""
    kernels._build(*FLAGS)
    folder = builds.compiled[0]
    for path in (tmp_path / "cache", folder.parent, folder, folder / "slimkit_csr_kernels.so"):
        path.chmod(_mode(path) | stat.S_IWGRP)
    monkeypatch.setattr(extension_cache, "private_group", lambda gid, uid: True)
    assert kernels._build(*FLAGS).origin == "cache"


@pytest.mark.parametrize(
    "group_name, members, gid, expected",
    [("ada", [], 1000, True), ("ada", ["ada"], 1000, True), ("ada", ["bob"], 1000, False),
     ("staff", [], 1000, False), ("ada", [], 50, False)],
)
def test_private_group_means_the_users_own_group(monkeypatch, group_name, members, gid, expected):
    users = {1000: SimpleNamespace(pw_name="ada", pw_gid=1000)}
    groups = {gid: SimpleNamespace(gr_name=group_name, gr_mem=members)}
    monkeypatch.setitem(sys.modules, "pwd", SimpleNamespace(getpwuid=users.__getitem__))
    monkeypatch.setitem(sys.modules, "grp", SimpleNamespace(getgrgid=groups.__getitem__))
    assert _real_private_group(gid, 1000) is expected
    assert _real_private_group(gid, 1001) is False  # an unknown user: assume the group is shared


def test_folders_of_another_user_are_refused(builds, tmp_path, monkeypatch, caplog):
    kernels._build(*FLAGS)
    folder = builds.compiled[0]
    monkeypatch.setattr(extension_cache, "current_uid", lambda: os.getuid() + 4242)  # as seen by someone else
    assert "belongs to another user" in extension_cache.folder_problem(folder, tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="slimkit"):
        kernels._build(*FLAGS)
    assert builds.imported == [] and builds.compiled[1] != folder
    assert "belongs to another user" in caplog.text


def test_folders_above_the_cache_may_be_roots_but_not_open_to_all(tmp_path):
    top = tmp_path / "shared" / "cache"
    folder = top / "extensions" / "x"
    folder.mkdir(parents=True)
    (tmp_path / "shared").chmod(0o777)  # anyone could swap 'cache' for their own
    assert "writable by other users" in extension_cache.folder_problem(folder, top)
    (tmp_path / "shared").chmod(0o777 | stat.S_ISVTX)  # sticky, like /tmp: they could not
    assert extension_cache.folder_problem(folder, top) is None


@pytest.mark.parametrize("problem", ["writable", "foreign", "link"])
def test_a_library_file_others_could_have_written_is_not_loaded(builds, monkeypatch, problem):
    kernels._build(*FLAGS)
    folder = builds.compiled[0]
    library = folder / "slimkit_csr_kernels.so"
    if problem == "writable":
        library.chmod(0o666)
    elif problem == "foreign":
        monkeypatch.setattr(extension_cache, "current_uid", lambda: os.getuid() + 4242)
    else:
        target = folder.parent / "elsewhere.so"
        library.rename(target)
        library.symlink_to(target)
    assert extension_cache.file_problem(library) is not None
    assert extension_cache.verified_library(folder) is None


def test_the_real_importer_loads_by_file_name(tmp_path):
    """import_library imports the module named by the file's stem (checked with a pure-Python file)."""
    path = tmp_path / "slimkit_fake_module.py"
    path.write_text("VALUE = 42\n")
    assert extension_cache.import_library(path).VALUE == 42
