"""`make bench-gpu`: the benchmarks too long for a CPU (ResNet-20 and VGG-11 training grids), run
side by side on one CUDA device. Each step is an ordinary benchmark script with `--device cuda`,
so finished runs are skipped and an interrupted `make bench-gpu` continues where it stopped.

Small models leave one process far from filling a GPU, so the steps run at the same time, each
with its own run workers. Under NVIDIA MPS (`nvidia-cuda-mps-control -d` before starting) the
processes' kernels share the GPU instead of taking turns: on one H100 with 16 CPU cores, 12-16
ResNet-20 runs side by side each trained at about 4,000 examples/s.

    python benchmarks/run_gpu.py                 # every step
    python benchmarks/run_gpu.py --only netslim  # the lanes whose name contains 'netslim'
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
CUDA = ["--device", "cuda"]
# Lanes run side by side; the steps of one lane run in order (the scheme comparison reuses the
# sweep's unstructured runs, so it must not start them a second time while the sweep runs them).
LANES = {
    "dst-resnet20": [
        ["dst_sweep.py", "--model", "resnet20", "--epochs", "10", "--sparsities", "0.9", "0.95", "0.98",
         "--allocations", "uniform", "erk", "--seeds", "0", "1", "--workers", "6", *CUDA],
        ["dst_schemes.py", "--model", "resnet20", "--epochs", "10", "--sparsity", "0.9", "--seeds", "0", "1",
         "--workers", "6", *CUDA],
    ],
    "netslim-vgg11": [
        ["netslim_fmnist.py", "--models", "resnet20", "vgg11", "--epochs", "10", "--finetune-epochs", "5", "--ratios", "0.5",
         "0.7", "--seeds", "0", "1", "--workers", "4", *CUDA],
    ],
    "forgetting-resnet20": [
        ["forgetting.py", "--model", "resnet20", "--epochs", "20", "--stats-epochs", "6", "--stats-lengths", "3",
         "10", "--seeds", "0", "1", "--workers", "6", *CUDA],
    ],
}


def run_lane(name: str, steps: list[list[str]]) -> bool:
    for step in steps:
        print(f"== {name}: {' '.join(step)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]]).returncode != 0:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="+", default=[], help="run only the lanes whose name contains one of these")
    args = parser.parse_args()
    chosen = {n: steps for n, steps in LANES.items() if not args.only or any(word in n for word in args.only)}
    if not chosen:
        raise SystemExit(f"no lane matches {args.only}; lanes: {', '.join(LANES)}")
    with ThreadPoolExecutor(len(chosen)) as pool:
        done = dict(zip(chosen, pool.map(run_lane, chosen, chosen.values())))
    failed = [name for name, ok in done.items() if not ok]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
