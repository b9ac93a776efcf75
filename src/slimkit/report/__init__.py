"""Tables (and, later, plots and HTML reports) from run folders."""

from slimkit.report.table import metrics_table

__all__ = ["metrics_table"]
