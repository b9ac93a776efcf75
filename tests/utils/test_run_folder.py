"""RunFolder.claimed: a run writes only into an empty folder or a slimkit run folder, marks it,
and removes the temp files a killed run left."""

import shutil
from pathlib import Path

import pytest

from slimkit.utils.run_folder import MARKER_FILE, RunFolder, RunFolderError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "runs-0.1.0"


def test_a_new_folder_is_created_and_marked(tmp_path):
    out = tmp_path / "a" / "b"
    with RunFolder(out).claimed():
        assert (out / MARKER_FILE).is_file()
    assert RunFolder(out).is_slimkit_folder()


def test_a_folder_of_files_slimkit_did_not_write_is_refused_and_left_untouched(tmp_path):
    (tmp_path / "config.yaml").write_text("my notes\n")
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(RunFolderError, match=r"slimkit did not write it \(config.yaml, model.json\).*--overwrite"):
        with RunFolder(tmp_path).claimed():
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "model.json"]  # no lock file, no marker


def test_overwrite_adopts_a_foreign_folder(tmp_path):
    (tmp_path / "config.yaml").write_text("my notes\n")
    with RunFolder(tmp_path).claimed(overwrite=True):
        pass
    assert RunFolder(tmp_path).is_slimkit_folder()


@pytest.mark.parametrize("name", ["mest-mlp", "channels-lenet5"])
def test_run_folders_written_before_the_marker_are_recognised(tmp_path, name):
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    assert RunFolder(run).is_slimkit_folder()
    with RunFolder(run).claimed(resume=True):
        pass


def test_old_imp_and_slim_folders_are_recognised_by_their_nested_runs(tmp_path):
    imp = tmp_path / "imp"
    (imp / "round-0").mkdir(parents=True)
    (imp / "config.yaml").write_text("method: imp\n")
    slim = tmp_path / "slim"
    shutil.copytree(FIXTURES / "mest-mlp", slim / "train")
    assert RunFolder(imp).is_slimkit_folder() and RunFolder(slim).is_slimkit_folder()


@pytest.mark.parametrize("setup", ["missing", "empty", "foreign"])
def test_resume_needs_a_slimkit_run_folder(tmp_path, setup):
    out = tmp_path / "out"
    if setup != "missing":
        out.mkdir()
    if setup == "foreign":
        (out / "config.yaml").write_text("model: lenet5\n")
    with pytest.raises(RunFolderError, match="cannot resume"):
        with RunFolder(out).claimed(resume=True):
            pass


@pytest.mark.parametrize("left", ["..slimkit-run.fhi8luc3.tmp", ".config.yaml.a1b2c3d4.tmp"])
def test_a_run_killed_while_writing_its_first_file_can_start_again(tmp_path, left):
    (tmp_path / left).write_bytes(b"half")  # SIGKILL during the first write (found by scripts/fault_injection.py)
    with RunFolder(tmp_path).claimed():
        pass
    assert not (tmp_path / left).exists()


def test_stale_temp_files_of_run_files_are_swept_and_nothing_else(tmp_path):
    stale = [".checkpoint.pt.k2_x9qab.tmp", ".model.safetensors.abcdefgh.tmp", ".metrics.json.12345678.tmp"]
    kept = [".notes.txt.abcdefgh.tmp", "checkpoint.pt.abcdefgh.tmp", ".checkpoint.pt.short.tmp", "model.onnx"]
    (tmp_path / MARKER_FILE).write_text("")
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "round-1").mkdir()
    (tmp_path / "round-1" / stale[0]).write_bytes(b"x")  # not this folder: imp sweeps its rounds itself
    with RunFolder(tmp_path).claimed(resume=True):
        names = {p.name for p in tmp_path.iterdir()}
    assert not names & set(stale)
    assert set(kept) <= names
    assert (tmp_path / "round-1" / stale[0]).exists()


@pytest.mark.parametrize("text, problem", [
    (b'{"test_acc": 0.9', "is not valid JSON"), (b"", "is not valid JSON"), (b"\xff\xfe{}", "is not UTF-8 text"),
    (b"[1, 2]", "must hold a JSON object .*found list"), (b'"x"', "must hold a JSON object .*found str"),
])
def test_damaged_metrics_and_sidecars_are_named(tmp_path, text, problem):
    (tmp_path / "metrics.json").write_bytes(text)
    (tmp_path / "pruning.json").write_bytes(text)
    with pytest.raises(RunFolderError, match=f"{tmp_path / 'metrics.json'} {problem}"):
        RunFolder(tmp_path).read_metrics()
    with pytest.raises(RunFolderError, match=f"{tmp_path / 'pruning.json'} {problem}"):
        RunFolder(tmp_path).read_json("pruning.json")
