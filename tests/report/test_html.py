import base64
import json
import re
import shutil
from html.parser import HTMLParser

import pytest

from slimkit.cli import main
from slimkit.report import ReportError, write_html_report
from slimkit.report.table import COLUMNS, _cell

PNG = b"\x89PNG\r\n\x1a\n"
# training curves + accuracy vs sparsity, layer sparsity for all 3 runs, masks and mask updates
# for the 2 sparse runs (the dense run has no zeros and no mask updates)
EXPECTED_FIGURES = 2 + 3 + 2 + 2


class _Cells(HTMLParser):
    """Rows of the metrics table: [(attrs, text), ...] per <tr> of <tbody>."""

    def __init__(self):
        super().__init__()
        self.rows, self.cell, self.in_body = [], None, False

    def handle_starttag(self, tag, attrs):
        if tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_body:
            self.rows.append([])
        elif tag == "td" and self.in_body:
            self.cell = [dict(attrs), ""]

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.rows[-1].append(tuple(self.cell))
            self.cell = None
        elif tag == "tbody":
            self.in_body = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    path = write_html_report(list(runs.values()), out / "report.html", title="test report", png_dir=out / "png")
    return path, path.read_text()


def test_html_is_self_contained(report):
    _, text = report
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "url(" not in text and "@import" not in text
    sources = re.findall(r"""\bsrc\s*=\s*["']?([^"'\s>]*)""", text)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    assert "<script src" not in text


def test_one_decodable_img_per_figure(report):
    _, text = report
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == len(re.findall(r"<img\b", text)) == EXPECTED_FIGURES
    assert all(base64.b64decode(data).startswith(PNG) for data in images)
    assert "data-images-loaded" in text or "imagesLoaded" in text  # the decode counter for browsers


def test_table_values_equal_metrics(report, runs):
    _, text = report
    parser = _Cells()
    parser.feed(text)
    assert len(parser.rows) == len(runs)
    for row, run in zip(parser.rows, runs.values()):
        metrics = json.loads((run / "metrics.json").read_text())
        assert row[0][1] == run.name
        by_key = {attrs["data-key"]: (attrs, cell) for attrs, cell in row[1:]}
        assert by_key["method"][1] == metrics["method"] and by_key["scheme"][1] == metrics["scheme"]
        for key, _, fmt in COLUMNS:
            attrs, cell = by_key[key]
            assert cell == _cell(metrics.get(key), fmt), key
            assert type(metrics[key])(attrs["data-value"]) == metrics[key], key


def test_png_files_written(report):
    path, _ = report
    files = sorted((path.parent / "png").glob("*.png"))
    assert len(files) == EXPECTED_FIGURES
    assert all(f.read_bytes().startswith(PNG) for f in files)
    names = {f.stem for f in files}
    assert {"training_curves", "accuracy_vs_sparsity", "run3-block-masks", "run1-dense-layer_sparsity"} <= names


def test_not_a_run_folder_names_it(tmp_path, runs):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    with pytest.raises(ReportError, match=r"not-a-run has no metrics\.json: not a finished slimkit run"):
        write_html_report([runs["dense"], empty], tmp_path / "r.html")
    with pytest.raises(ReportError, match="missing-folder"):
        write_html_report([tmp_path / "missing-folder"], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_text_from_files_is_escaped(runs, tmp_path):
    odd = tmp_path / 'run <img src=x onerror="alert(1)">'
    shutil.copytree(runs["dense"], odd)
    metrics = json.loads((odd / "metrics.json").read_text())
    metrics["method"] = "<b>bold</b>"
    (odd / "metrics.json").write_text(json.dumps(metrics))
    text = write_html_report([odd], tmp_path / "r.html", title="A & <B>").read_text()
    assert "<b>bold</b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text
    assert "onerror=\"alert" not in text and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text
    assert "<title>A &amp; &lt;B&gt;</title>" in text


def test_cli_report(runs, tmp_path, capsys):
    out, png = tmp_path / "cli.html", tmp_path / "png"
    argv = ["report", str(runs["dense"]), str(runs["block"]), "--out", str(out), "--png-dir", str(png), "--title", "CLI"]
    assert main(argv) == 0
    assert str(out) in capsys.readouterr().out
    text = out.read_text()
    assert "<title>CLI</title>" in text and text.count("<img") == len(list(png.glob("*.png"))) == 2 + 2 + 2
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "x.html")]) == 2
    assert "nope" in capsys.readouterr().err


def test_folder_without_model_or_history(tmp_path):
    run = tmp_path / "metrics-only"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"method": "dense", "test_acc": 0.5, "sparsity": 0.0}))
    text = write_html_report([run], tmp_path / "r.html").read_text()
    assert text.count("<img") == 1  # accuracy vs sparsity only
    assert "metrics-only (no saved model)" in text and "metrics-only (no mask updates in history.csv)" in text
