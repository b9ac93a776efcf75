"""The application layer: one module per pipeline, each turning a config into a run folder.

    from slimkit.runs import make_config, train_run
    metrics = train_run(make_config({"model": "lenet5", "method": "mest-ems", "sparsity": 0.9}), "runs/mest")

`slimkit.cli` only parses flags and calls these. The run folder's file names and checks live in
`slimkit.utils.run_folder`, so the Trainer, export and report read the same folders.
"""

from slimkit.runs.build import build_method, build_trainer, load_data, make_model
from slimkit.runs.channels import prune_channels_run, slim_run
from slimkit.runs.config import ConfigError, RunConfig, dump_config, load_config, make_config, read_yaml
from slimkit.runs.demo import run_demo
from slimkit.runs.distill import distill_run, resume_distill_run
from slimkit.runs.loss_terms import LossTerms, refuse_train_on_derived_run
from slimkit.runs.prune import PRUNE_METHODS, prune_run
from slimkit.runs.quantize import QUANT_MODES, quantize_run
from slimkit.runs.train import train_run
from slimkit.utils.run_folder import RunFolder, RunFolderError, read_metrics

__all__ = [
    "PRUNE_METHODS", "QUANT_MODES", "ConfigError", "LossTerms", "RunConfig", "RunFolder", "RunFolderError",
    "build_method", "build_trainer", "distill_run", "dump_config", "load_config", "load_data", "make_config",
    "make_model", "prune_channels_run", "prune_run", "quantize_run", "read_metrics", "read_yaml",
    "refuse_train_on_derived_run", "resume_distill_run", "run_demo", "slim_run", "train_run",
]
