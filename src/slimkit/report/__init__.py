"""Tables, plots and self-contained HTML reports of finished run folders.

`metrics_table` is imported eagerly (every CLI command prints it); the HTML report and the plots
load matplotlib, so they are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from slimkit.report.table import metrics_table

_LAZY = {
    "Figure": "slimkit.report.html", "report_figures": "slimkit.report.html", "write_html_report": "slimkit.report.html",
    "ReportError": "slimkit.report.runs", "RunData": "slimkit.report.runs", "read_run": "slimkit.report.runs",
    "read_runs": "slimkit.report.runs",
}

__all__ = ["metrics_table", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'slimkit.report' has no attribute {name!r}")
