"""`make bench`: every CPU benchmark in order, each rebuilding its section of BENCHMARKS.md with
the command quoted there. Finished runs are reused, so an interrupted `make bench` continues
where it stopped. The ResNet-20 and VGG-11 training grids need a GPU: `run_gpu.py` (`make bench-gpu`)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = [
    ["dense_baselines.py", "--reuse", "--models", "lenet300", "lenet5", "--seeds", "0", "1"],
    ["dense_baselines.py", "--reuse", "--models", "resnet20", "--seeds", "0"],  # 20 epochs: an hour on 2 cores
    ["pruning_sweep.py", "--model", "lenet300"],
    ["oneshot_compare.py", "--model", "lenet300"],
    ["pruning_sweep.py", "--model", "lenet5"],
    ["pruning_sweep.py", "--model", "lenet5", "--schemes-only", "--sparsities", "0.9"],
    ["dst_sweep.py", "--model", "lenet5"],
    ["compressed_step.py"],
    ["compressed_training.py", "--epochs", "3", "--threads", "1"],
    ["compressed_schemes.py"],
    ["compressed_training.py", "--model", "resnet20", "--scheme", "channel", "--sparsity", "0.75", "--epochs", "1"],
    ["forgetting.py", "--model", "lenet5", "--epochs", "30", "--stats-epochs", "10", "--fractions", "0.1", "0.2", "0.3",
     "0.4", "--thresholds", "0", "1", "--stats-lengths", "5", "15", "--length-fraction", "0.3", "--sparsities", "0.9",
     "0.95", "--seeds", "0", "1", "--workers", "1"],
    ["forgetting_walltime.py", "--model", "lenet5", "--epochs", "30", "--stats-epochs", "10", "--remove-fraction", "0.4",
     "--rounds", "3"],
    ["structured_speed.py", "--size", "224"],
    ["deploy_latency.py", "--models", "resnet50", "vgg16", "--batches", "1", "16"],
    ["deploy_latency.py", "--models", "timm:deit_small_patch16_224", "--batches", "1", "16", "--repeats", "20",
     "--section", "deploy-latency-vit"],
    ["netslim_fmnist.py", "--models", "resnet20", "--epochs", "10", "--finetune-epochs", "5", "--ratios", "0.5", "0.7",
     "--seeds", "0", "1"],
    ["quant_distill.py", "--epochs", "3", "--kd-epochs", "3", "--seeds", "0", "1"],
]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the steps, run nothing")
    if parser.parse_args().list:
        print("\n".join(f"python benchmarks/{' '.join(step)}" for step in STEPS))
        sys.exit(0)
    for step in STEPS:
        print(f"== {' '.join(step)}", flush=True)
        subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]], check=True)
