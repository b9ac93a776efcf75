import pytest

from slimkit.utils.fileio import atomic_copy, atomic_write, atomic_write_text


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
