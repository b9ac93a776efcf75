"""`slimkit prune`: prune a finished run once (or gradually) and fine-tune it with fixed masks.

It is a `train` run of the source's settings that starts from the source's weights
(`init_from`), with the fine-tuning learning rate and without the source's schedule keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimkit.runs.config import finetune_lr, finetune_values, make_config, read_yaml
from slimkit.runs.train import train_run
from slimkit.utils.run_folder import RunFolder

PRUNE_METHODS = ("magnitude", "obd", "taylor", "obs", "snip", "random", "gmp")


def prune_run(
    source: str | Path, out: str | Path | None = None, *, method: str, finetune_epochs: int = 5,
    overrides: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Prune the run in `source` with `method` and fine-tune it for `finetune_epochs` into `out`
    (default: SOURCE-METHOD-SPARSITY beside it); `overrides` replace run settings. Returns the
    run folder and its metrics."""
    if method not in PRUNE_METHODS:
        raise ValueError(f"method must be one of {', '.join(PRUNE_METHODS)}, got {method!r}")
    source = Path(source)
    saved = read_yaml(RunFolder(source).config)
    values = finetune_values(saved, lr=finetune_lr(saved), init_from=str(source), method=method, epochs=finetune_epochs)
    config = make_config({**values, **(overrides or {})})
    out = Path(out) if out else source.parent / f"{source.name}-{method}-{config.sparsity:g}"
    return out, train_run(config, out)
