"""A run folder's JSON files may be damaged or hand-edited: reading one gives a RunFolderError
naming the file, never a JSONDecodeError, AttributeError or OSError from deep inside a command."""

import pytest

from slimkit.utils.run_folder import RunFolder, RunFolderError, read_metrics


@pytest.mark.parametrize(
    "content,problem",
    [
        (b"{not json", "is not valid JSON: Expecting property name"),
        (b"", "is not valid JSON"),
        (b"[0.9, 0.1]", "must hold a JSON object {...}, found list"),
        (b'"0.9"', "must hold a JSON object {...}, found str"),
        (b"null", "must hold a JSON object {...}, found NoneType"),
        (b'{"test_acc": 0.9\xff}', "is not UTF-8 text"),
    ],
)
def test_a_bad_metrics_file_is_named(tmp_path, content, problem):
    (tmp_path / "metrics.json").write_bytes(content)
    with pytest.raises(RunFolderError, match="metrics.json") as err:
        read_metrics(tmp_path)
    assert str(err.value).startswith(str(tmp_path / "metrics.json")) and problem in str(err.value)


def test_a_bad_sidecar_is_named(tmp_path):
    (tmp_path / "loss_terms.json").write_text("[]")
    with pytest.raises(RunFolderError, match="loss_terms.json must hold a JSON object"):
        RunFolder(tmp_path).read_json("loss_terms.json")


def test_an_unreadable_metrics_file_is_named(tmp_path):
    (tmp_path / "metrics.json").mkdir()  # is_file() is False: not a finished run
    with pytest.raises(RunFolderError, match="not a finished slimkit run"):
        read_metrics(tmp_path)
    (tmp_path / "loss_terms.json").mkdir()
    with pytest.raises(RunFolderError, match=r"cannot read .*loss_terms.json: Is a directory"):
        RunFolder(tmp_path).read_json("loss_terms.json")


def test_a_good_metrics_file_reads_as_before(tmp_path):
    (tmp_path / "metrics.json").write_text('{"test_acc": 0.9, "old_nan": NaN}')
    metrics = read_metrics(tmp_path)
    assert metrics["test_acc"] == 0.9 and metrics["old_nan"] != metrics["old_nan"]
