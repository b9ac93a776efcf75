"""`slimkit demo` / `make demo`: the main job on Fashion-MNIST, ending in one comparison table.

Every number in the table is read back from the run folders this command wrote.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from slimkit.config import make_config
from slimkit.fileio import atomic_write_text
from slimkit.report import metrics_table
from slimkit.runner import read_metrics, train_run

log = logging.getLogger("slimkit")

DEMO_RUNS: list[tuple[str, dict[str, Any]]] = [
    ("dense-lenet300", {"model": "lenet300", "lr": 0.05, "weight_decay": 5e-4, "augment": False}),
    ("dense-lenet5", {"model": "lenet5", "lr": 0.05, "weight_decay": 5e-4}),
    (  # sparse from the first step to the last: MEST with elastic mutation and a soft memory bound
        "mest-ems-90-lenet5",
        {"model": "lenet5", "lr": 0.05, "weight_decay": 5e-4, "method": "mest-ems", "sparsity": 0.9},
    ),
]


def run_demo(out: Path, *, quick: bool = False) -> list[tuple[str, dict[str, Any]]]:
    epochs = 1 if quick else 6
    results = []
    for label, settings in DEMO_RUNS:
        run_dir = out / label
        if run_dir.exists():
            shutil.rmtree(run_dir)  # the demo owns its folders and always starts fresh
        config = make_config({"data": "fashion-mnist", "epochs": epochs, **settings})
        log.info(f"== {label}: {config.model}, {epochs} epoch(s) -> {run_dir}")
        train_run(config, run_dir)
        results.append((label, read_metrics(run_dir)))
    table = metrics_table(results)
    atomic_write_text(out / "summary.txt", table + "\n")
    print(table)
    print(f"\nRun folders and summary.txt are in {out}/ (`slimkit info {out}/*/` prints them again).")
    return results
