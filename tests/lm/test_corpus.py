"""The corpus: split by file, deterministic, disjoint, recorded."""

import platform

import pytest

from slimkit.lm import SPLITS, folder_corpus, split_of, stdlib_corpus


def _folder(tmp_path, count=60):
    for index in range(count):
        sub = tmp_path / f"d{index % 3}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{index}.txt").write_text(f"text {index}\n" * (index + 1))
    (tmp_path / "skip.bin").write_bytes(b"\0")
    return tmp_path


def test_folder_split_is_deterministic_disjoint_and_complete(tmp_path):
    root = _folder(tmp_path)
    first, again = folder_corpus(root, fractions=(0.6, 0.2, 0.2)), folder_corpus(root, fractions=(0.6, 0.2, 0.2))
    assert first.splits == again.splits and first.info == again.info
    every = [path for split in SPLITS for path in first.paths(split)]
    assert len(every) == len(set(every)) == 60
    assert all(first.paths(split) for split in SPLITS)
    for split in SPLITS:
        assert all(split_of(path, (0.6, 0.2, 0.2)) == split for path in first.paths(split))
    assert first.info.files == {split: len(first.paths(split)) for split in SPLITS}
    assert sum(first.info.bytes.values()) == sum(p.stat().st_size for p in root.rglob("*.txt"))
    assert first.info.python_version == platform.python_version()


def test_a_files_split_does_not_depend_on_the_other_files(tmp_path):
    root = _folder(tmp_path)
    before = folder_corpus(root)
    (root / "d0" / "f0.txt").unlink()
    after = folder_corpus(root)
    for split in SPLITS:
        assert set(after.paths(split)) == set(before.paths(split)) - {"d0/f0.txt"}
    assert after.info.files_sha256 != before.info.files_sha256
    assert folder_corpus(root, seed=1).splits != after.splits


def test_texts_follow_the_paths_and_bad_settings_are_refused(tmp_path):
    root = _folder(tmp_path, 6)
    corpus = folder_corpus(root, fractions=(1.0, 0.0, 0.0))
    assert list(corpus.texts("train")) == [(root / path).read_text() for path in corpus.paths("train")]
    with pytest.raises(ValueError, match="fractions"):
        folder_corpus(root, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="no .md files"):
        folder_corpus(root, suffixes=(".md",))
    with pytest.raises(ValueError, match="unknown split"):
        corpus.paths("dev")


def test_stdlib_corpus_records_the_interpreter_and_excludes_installed_packages():
    corpus = stdlib_corpus()
    assert corpus.info.name == "python-stdlib" and corpus.info.python_version == platform.python_version()
    paths = [path for split in SPLITS for path in corpus.paths(split)]
    assert len(paths) == len(set(paths)) and "os.py" in paths
    assert not any(path.startswith("site-packages/") or "__pycache__" in path for path in paths)
    assert corpus.info.files["train"] > 10 * corpus.info.files["test"] > 0
    assert all(split_of(path) == split for split in SPLITS for path in corpus.paths(split))
    assert len(corpus.info.files_sha256) == 64
    assert set(corpus.info.to_dict()) >= {"python_version", "files_sha256", "files", "bytes", "seed", "fractions"}
