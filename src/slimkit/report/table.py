"""Plain-text tables of run metrics for the terminal."""

from __future__ import annotations

from typing import Any, Sequence

COLUMNS: list[tuple[str, str, str]] = [
    # (metrics.json key, header, format)
    ("test_acc", "test acc", "{:.2%}"),
    ("sparsity", "sparsity", "{:.1%}"),
    ("params_total", "params", "{:,}"),
    ("params_nonzero", "nonzero", "{:,}"),
    ("flops_dense", "FLOPs", "{:,}"),
    ("flops_sparse", "sparse FLOPs", "{:,}"),
    ("model_file_bytes", "file bytes", "{:,}"),
    ("peak_mem_bytes", "peak RSS", "{:,}"),
    ("train_time_s", "train s", "{:.1f}"),
    ("latency_ms", "latency ms", "{:.3f}"),
]


def table_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """A folder's metrics.json in the table's columns. An int8 folder (`slimkit quantize`) names its
    file size and latency after the format: model.int8.onnx bytes, ONNX Runtime batch-1 latency."""
    if "int8_acc" not in metrics:
        return metrics
    return {**metrics, "model_file_bytes": metrics["int8_bytes"], "latency_ms": metrics["latency_ms_b1"]["int8"]}


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def metrics_table(runs: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """One row per (label, metrics) pair, aligned columns."""
    header = ["run"] + [title for _, title, _ in COLUMNS]
    shown = [(label, table_metrics(m)) for label, m in runs]
    rows = [[label] + [_cell(m.get(key), fmt) for key, _, fmt in COLUMNS] for label, m in shown]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
