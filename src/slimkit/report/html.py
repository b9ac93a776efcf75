"""One self-contained HTML report of finished runs: the metrics table and every figure of
`slimkit.report.plots`, the PNGs embedded as base64 data URIs (no external files or requests)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from slimkit.utils.fileio import atomic_write, atomic_write_text
from slimkit.report import plots
from slimkit.report.runs import RunData, read_runs, slug
from slimkit.report.table import COLUMNS, _cell, table_metrics

# columns that say which run a row is, before table.py's numeric COLUMNS
ID_COLUMNS: list[tuple[str, str]] = [("model", "model"), ("method", "method"), ("scheme", "scheme")]


@dataclass
class Figure:
    name: str  # file name stem for --png-dir
    section: str  # key of SECTIONS
    title: str
    png: bytes
    run: int | None = None  # 1-based index of the run it shows; None for figures of all runs


# (key, heading, caption, run figures?) in page order; run figures of one kind sit side by side
SECTIONS: list[tuple[str, str, str, bool]] = [
    ("training_curves", "Training curves", "Train loss and test accuracy after each epoch, one line per run.", False),
    ("accuracy_vs_sparsity", "Accuracy vs sparsity",
     "Final test accuracy against the measured fraction of zero weights in Conv/Linear layers; colour = method, "
     "marker = scheme.", False),
    ("masks", "Masks",
     "Kept (nonzero) weights in black, for the largest layers of each run; each weight is viewed as "
     f"out x (in x kh x kw), and large layers show their top-left {plots.MASK_MAX_ROWS} x {plots.MASK_MAX_COLS} "
     "corner. "
     "Unstructured masks look like noise, block masks like short bars, pattern masks like small repeated shapes.",
     True),
    ("layer_sparsity", "Sparsity per layer",
     "Fraction of exact zeros in each Conv/Linear weight of the saved model (numbers: the layer's weights); the dashed "
     "line is the run's overall sparsity.", True),
    ("mask_activity", "Mask updates",
     "Weights pruned and regrown by dynamic sparse training in each epoch (history.csv weights_moved), stacked by "
     "layer.",
     True),
]
SKIPPED = {  # why a run has no figure of a kind
    "masks": lambda run: "no saved model" if not run.has_model else "no zero weights",
    "layer_sparsity": lambda run: "no saved model",
    "mask_activity": lambda run: "no mask updates in history.csv",
}


def report_figures(runs: Sequence[RunData]) -> list[Figure]:
    """Every figure of the report, in page order; figures without data are left out."""
    makers = {
        "training_curves": plots.plot_training_curves, "accuracy_vs_sparsity": plots.plot_accuracy_vs_sparsity,
        "masks": plots.plot_masks, "layer_sparsity": plots.plot_layer_sparsity,
        "mask_activity": plots.plot_mask_activity,
    }
    figures = []
    for key, heading, _, per_run in SECTIONS:
        if not per_run:
            png = makers[key](runs)
            if png is not None:
                figures.append(Figure(key, key, heading, png))
            continue
        for i, run in enumerate(runs, start=1):
            png = makers[key](run)
            if png is not None:
                name = f"run{i}-{slug(run.label)}-{key}"
                figures.append(Figure(name, key, f"{run.label}: {heading.lower()}", png, i))
    return figures


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1150px;
       color: #222; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.meta { color: #666; font-size: 0.9em; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.85em; margin: 8px 0; }
div.table { overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 4px 8px; }
td { white-space: nowrap; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.run { font-family: ui-monospace, monospace; white-space: normal; overflow-wrap: anywhere; max-width: 14em; }
figure { margin: 8px 0 16px; }
p.caption { color: #555; font-size: 0.85em; margin: 4px 0 8px; }
div.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: 8px 16px;
           align-items: start; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85em; margin-top: 4px; }
"""

# On load, count the images that decoded (a headless browser's --dump-dom shows the attributes).
SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, decoded = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { decoded += 1; }
  }
  document.body.dataset.imagesTotal = String(images.length);
  document.body.dataset.imagesLoaded = String(decoded);
});
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def metrics_table_html(runs: Sequence[RunData]) -> str:
    """The metrics as an HTML table: run, model, method, scheme, then table.py's COLUMNS, formatted
    as in the terminal. Each cell carries its metrics.json key and raw value as data attributes."""
    head = ["run"] + [title for _, title in ID_COLUMNS] + [title for _, title, _ in COLUMNS]
    header = "<thead><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr></thead>"
    lines = ["<table class=\"metrics\">", header, "<tbody>"]
    for run in runs:
        cells = [f"<td class=\"run\" title=\"{_esc(run.path)}\">{_esc(run.label)}</td>"]
        for key, _ in ID_COLUMNS:
            value = run.metrics.get(key)
            cells.append(f"<td data-key=\"{key}\">{_esc('-' if value is None else value)}</td>")
        shown = table_metrics(run.metrics)
        for key, _, fmt in COLUMNS:
            value = shown.get(key)
            raw = "" if value is None else _esc(repr(value) if isinstance(value, float) else value)
            cells.append(f"<td class=\"num\" data-key=\"{key}\" data-value=\"{raw}\">{_esc(_cell(value, fmt))}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _figure_html(figure: Figure, caption: str | None = None) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    text = f"\n<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return (f"<figure id=\"{_esc(figure.name)}\">\n<img alt=\"{_esc(figure.title)}\" "
            f"src=\"data:image/png;base64,{data}\">{text}\n</figure>")


def render_html(runs: Sequence[RunData], figures: Sequence[Figure], title: str) -> str:
    body = [
        f"<h1>{_esc(title)}</h1>",
        f"<p class=\"meta\">{len(runs)} run{'s' if len(runs) != 1 else ''}: "
        + ", ".join(f"<span title=\"{_esc(run.path)}\">{_esc(run.label)}</span>" for run in runs) + "</p>",
        "<h2>Metrics</h2>",
        "<div class=\"table\">" + metrics_table_html(runs) + "</div>",
    ]
    for key, heading, caption, per_run in SECTIONS:
        shown = [f for f in figures if f.section == key]
        if not per_run:
            if shown:
                body += [f"<h2>{_esc(heading)}</h2>", _figure_html(shown[0]),
                         f"<p class=\"caption\">{_esc(caption)}</p>"]
            continue
        body += [f"<h2>{_esc(heading)}</h2>", f"<p class=\"caption\">{_esc(caption)}</p>"]
        if shown:
            body.append("<div class=\"grid\">\n" + "\n".join(
                _figure_html(f, f"run {f.run}: {runs[f.run - 1].label}") for f in shown) + "\n</div>")
        with_figure = {f.run for f in shown}
        missing = [f"{_esc(run.label)} ({_esc(SKIPPED[key](run))})" for i, run in enumerate(runs, start=1)
                   if i not in with_figure]
        if missing:
            body.append(f"<p class=\"meta\">Not shown: {', '.join(missing)}.</p>")
    body.append("<p class=\"meta\">Run folders: " + ", ".join(
        f"{i}. <code>{_esc(run.path)}</code>" for i, run in enumerate(runs, start=1)) + "</p>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_esc(title)}</title>\n<style>{CSS}</style>\n<script>{SCRIPT}</script>\n</head>\n"
        "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_html_report(
    run_dirs: Sequence[str | Path], out: str | Path, title: str = "slimkit report", png_dir: str | Path | None = None,
) -> Path:
    """Write one self-contained HTML report of the finished runs in `run_dirs` to `out`; with
    `png_dir`, also each figure as `<png_dir>/<name>.png`. Returns the HTML file's path.

    Raises `slimkit.report.ReportError` (a ValueError) naming the folder when one is not a
    finished run (no metrics.json)."""
    runs = read_runs(list(run_dirs))
    figures = report_figures(runs)
    written = []
    if png_dir is not None:
        for figure in figures:
            written.append(atomic_write(Path(png_dir) / f"{figure.name}.png",
                                        lambda tmp, png=figure.png: Path(tmp).write_bytes(png)))
    written.append(atomic_write_text(Path(out), render_html(runs, figures, title)))
    for path in written:  # meant to be shared: readable like a normally created file, not 0600 as temp files are
        path.chmod(0o644)
    return written[-1]
