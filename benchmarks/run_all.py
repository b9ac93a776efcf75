"""`make bench`: every CPU benchmark in order, each rebuilding its section of BENCHMARKS.md with
the command quoted there. Finished runs are reused, so an interrupted `make bench` continues
where it stopped. The ResNet-20 and VGG-11 training grids need a GPU: `run_gpu.py` (`make bench-gpu`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = [
    ["dense_baselines.py", "--reuse"],
    ["pruning_sweep.py", "--model", "lenet300"],
    ["oneshot_compare.py", "--model", "lenet300"],
    ["pruning_sweep.py", "--model", "lenet5"],
    ["pruning_sweep.py", "--model", "lenet5", "--schemes-only", "--sparsities", "0.9"],
    ["dst_sweep.py", "--model", "lenet5"],
    ["compressed_step.py"],
    ["compressed_training.py", "--epochs", "3", "--threads", "1"],
    ["compressed_schemes.py"],
    ["compressed_training.py", "--model", "resnet20", "--scheme", "channel", "--sparsity", "0.75", "--epochs", "1"],
    ["forgetting.py", "--model", "lenet5", "--epochs", "6", "--stats-epochs", "2", "--fractions", "0.1", "0.2", "0.3",
     "0.4", "--thresholds", "0", "--stats-lengths", "1", "3", "--length-fraction", "0.3", "--sparsities", "0.9", "0.95",
     "--seeds", "0", "--workers", "2"],
    ["forgetting_walltime.py", "--model", "lenet5", "--epochs", "30", "--stats-epochs", "10", "--remove-fraction", "0.4",
     "--rounds", "3"],
    ["structured_speed.py", "--size", "224"],
    ["deploy_latency.py", "--models", "resnet50", "vgg16", "--batches", "1", "16"],
    ["deploy_latency.py", "--models", "timm:deit_small_patch16_224", "--batches", "1", "16", "--repeats", "20",
     "--section", "deploy-latency-vit"],
    ["netslim_fmnist.py", "--models", "resnet20", "--epochs", "10", "--finetune-epochs", "5", "--ratios", "0.5", "0.7",
     "--seeds", "0", "1", "--workers", "2", "--threads", "1"],
    ["quant_distill.py", "--epochs", "3", "--kd-epochs", "3", "--seeds", "0", "1"],
]

if __name__ == "__main__":
    for step in STEPS:
        print(f"== {' '.join(step)}", flush=True)
        subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]], check=True)
