"""`slimkit prune`: prune a finished run once (or gradually) and fine-tune it with fixed masks.

It is a `train` run of the source's settings that starts from the source's weights
(`init_from`), with the fine-tuning learning rate and without the source's schedule keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimkit.runs.config import RunConfig, finetune_lr, finetune_values, make_config, read_yaml
from slimkit.runs.train import train_run
from slimkit.utils.run_folder import RunFolder

PRUNE_METHODS = ("magnitude", "obd", "taylor", "obs", "snip", "random", "gmp")


def prune_run(
    source: str | Path, out: str | Path | None = None, *, method: str, finetune_epochs: int = 5,
    overrides: dict[str, Any] | None = None, overwrite: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Prune the run in `source` with `method` and fine-tune it for `finetune_epochs` into `out`
    (default: `default_prune_out`); `overrides` replace run settings; `overwrite` accepts a
    non-empty folder slimkit did not write. Returns the run folder and its metrics."""
    config = prune_config(source, method=method, finetune_epochs=finetune_epochs, overrides=overrides)
    out = Path(out) if out else _default_out(source, method, config)
    return out, train_run(config, out, overwrite=overwrite)


def prune_config(source: str | Path, *, method: str, finetune_epochs: int,
                 overrides: dict[str, Any] | None = None) -> RunConfig:
    """The fine-tuning's run settings: the source's, with the fine-tuning lr, `method` and `overrides`."""
    if method not in PRUNE_METHODS:
        raise ValueError(f"method must be one of {', '.join(PRUNE_METHODS)}, got {method!r}")
    saved = read_yaml(RunFolder(source).config)
    values = finetune_values(saved, lr=finetune_lr(saved), init_from=str(source), method=method, epochs=finetune_epochs)
    return make_config({**values, **(overrides or {})})


def default_prune_out(source: str | Path, *, method: str, finetune_epochs: int,
                      overrides: dict[str, Any] | None = None) -> Path:
    """The run folder `prune_run` writes when given no `out`."""
    return _default_out(source, method, prune_config(source, method=method, finetune_epochs=finetune_epochs,
                                                     overrides=overrides))


def _default_out(source: str | Path, method: str, config: RunConfig) -> Path:
    """SOURCE-METHOD-SPARSITY beside the source run."""
    source = Path(source)
    return source.parent / f"{source.name}-{method}-{config.sparsity:g}"
