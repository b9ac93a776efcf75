"""`make bench`: every benchmark in order, each rebuilding its section of BENCHMARKS.md.
Finished runs are reused, so an interrupted `make bench` continues where it stopped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = [
    ["dense_baselines.py", "--reuse"],
    ["pruning_sweep.py", "--model", "lenet300"],
    ["oneshot_compare.py", "--model", "lenet300"],
    ["pruning_sweep.py", "--model", "lenet5", "--schemes-only", "--sparsities", "0.9"],
    ["dst_sweep.py", "--model", "lenet5"],
]

if __name__ == "__main__":
    for step in STEPS:
        print(f"== {' '.join(step)}", flush=True)
        subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]], check=True)
