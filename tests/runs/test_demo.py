"""`slimkit demo` end to end on the toy dataset: every step's folder, and a table whose every number
is the one in that folder's metrics.json."""

import json
import re
from pathlib import Path

import pytest

import slimkit.report
import slimkit.runs.demo
from slimkit.cli import main
from slimkit.runs.demo import STEPS
from slimkit.report.table import COLUMNS


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    calls = []
    real = slimkit.report.write_html_report

    def record(run_dirs, out_path, title="slimkit report", png_dir=None):
        calls.append([Path(d) for d in run_dirs])
        return real(run_dirs, out_path, title=title, png_dir=png_dir)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(slimkit.runs.demo, "write_html_report", record)
        assert main(["demo", "--quick", "--data", "synthetic", "--out", str(out)]) == 0
    return out, calls


def table_rows(text):
    lines = text.split("\n\n")[0].splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    return header, {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[2:])}


def expected_cells(metrics):
    """The table's cells for one folder, straight from its metrics.json (int8 folders: the int8
    ONNX file and its ONNX Runtime batch-1 latency)."""
    if "int8_acc" in metrics:
        metrics = {**metrics, "model_file_bytes": metrics["int8_bytes"],
                   "latency_ms": metrics["latency_ms_b1"]["int8"]}
    return ["-" if metrics.get(key) is None else fmt.format(metrics[key]) for key, _, fmt in COLUMNS]


def test_every_step_writes_its_run_folder(demo):
    out, calls = demo
    names = [name for name, _, _ in STEPS]
    assert names == ["dense-lenet5", "mest-ems-90", "channels-50", "int8-dense", "int8-channels", "kd-mest-ems-90"]
    for name in names:
        assert (out / name / "metrics.json").is_file(), name
    assert (out / "int8-dense" / "model.int8.onnx").is_file()
    assert (out / "report.html").is_file()
    assert calls == [[out / name for name in names]]


def test_table_numbers_are_the_run_folders_numbers(demo):
    out, _ = demo
    header, rows = table_rows((out / "summary.txt").read_text())
    assert header == ["run"] + [title for _, title, _ in COLUMNS]
    assert list(rows) == [name for name, _, _ in STEPS]
    for name, cells in rows.items():
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert cells == expected_cells(metrics), name


def test_report_html_table_shows_what_summary_shows(demo):
    """int8 rows name the ONNX file's bytes and latency in both tables, not '-' in one of them."""
    out, _ = demo
    _, rows = table_rows((out / "summary.txt").read_text())
    page = (out / "report.html").read_text()
    for name, cells in rows.items():
        row = re.search(r'<tr><td class="run"[^>]*>' + re.escape(name) + r"</td>(.*?)</tr>", page).group(1)
        numbers = re.findall(r'<td class="num"[^>]*>([^<]*)</td>', row)
        assert numbers == cells, name


def test_the_pipeline_does_what_it_says(demo):
    out, _ = demo
    m = {name: json.loads((out / name / "metrics.json").read_text()) for name, _, _ in STEPS}
    dense = m["dense-lenet5"]
    assert dense["method"] == "dense" and dense["sparsity"] == 0
    assert m["mest-ems-90"]["method"] == "mest-ems" and m["mest-ems-90"]["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert m["channels-50"]["params_total"] < dense["params_total"] / 2  # physically smaller
    assert m["int8-dense"]["source"] == str(out / "dense-lenet5")
    assert m["int8-channels"]["params_total"] == m["channels-50"]["params_total"]
    assert m["int8-dense"]["int8_bytes"] < m["int8-dense"]["fp32_bytes"]
    assert m["kd-mest-ems-90"]["teachers"] == [str(out / "dense-lenet5")]
    assert m["kd-mest-ems-90"]["params_nonzero"] == m["mest-ems-90"]["params_nonzero"]


def test_demo_refuses_to_replace_run_folders_it_did_not_make(tmp_path, capsys):
    user_run = tmp_path / STEPS[0][0]
    user_run.mkdir()
    (user_run / "metrics.json").write_text("{}")
    assert main(["demo", "--quick", "--data", "synthetic", "--out", str(tmp_path)]) == 2
    assert "did not make" in capsys.readouterr().err
    assert (user_run / "metrics.json").read_text() == "{}"
