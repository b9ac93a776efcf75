"""The run configuration: one flat, strictly validated set of keys, composed of sections (the
training loop's, each method's, data efficiency's). YAML recipes and CLI flags are two spellings of
the same keys (`batch_size:` in YAML is `--batch-size` on the command line)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from slimkit.efficiency.settings import DataEfficiencySettings
from slimkit.methods.dst.settings import DSTSettings
from slimkit.methods.gradual import GradualSettings
from slimkit.methods.imp import IMPSettings
from slimkit.methods.prune_once import PruneOnceSettings
from slimkit.train.config import StrictModel, TrainConfig
from slimkit.utils.run_folder import read_user_text


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range; names the key."""


class RunSettings(StrictModel):
    """What a run trains on and how sparse: model, data, method, scheme, allocation, outputs."""

    model: str = Field("lenet5", description="model name (see `slimkit models`) or tv:<torchvision name>")
    model_options: dict[str, Any] = Field({}, description="extra model arguments, e.g. {shortcut: B}")
    data: str = Field("fashion-mnist", description="dataset name (see `slimkit datasets`)")
    data_dir: str | None = Field(None, description="folder with the dataset files (default: $SLIMKIT_DATA/<name>)")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="fraction of the training set held out for validation")
    method: Literal[
        "dense", "magnitude", "random", "snip", "grasp", "synflow", "obd", "taylor", "obs", "gmp", "imp",
        "mest", "mest-em", "mest-ems", "set", "dsr", "rigl",
    ] = Field(
        "dense",
        description="dense; prune once then train with fixed masks (magnitude, random, snip, grasp, synflow at "
        "init; magnitude, obd, taylor, obs on --init-from weights); gmp (gradual magnitude pruning); "
        "imp (iterative magnitude pruning with rewinding); dynamic sparse training: mest, mest-em, mest-ems, set, dsr, rigl",
    )
    init_from: str | None = Field(None, description="run folder whose trained weights start this run (pruning)")
    sparsity: float = Field(0.0, ge=0, lt=1, description="target fraction of zeros over the pruned layers")
    scheme: Literal["unstructured", "channel", "block", "pattern", "nm"] = Field(
        "unstructured", description="sparsity structure"
    )
    scheme_options: dict[str, Any] = Field({}, description="scheme arguments, e.g. {block: [8, 1], prune: cols}")
    allocation: Literal["uniform", "erk", "global"] = Field("uniform", description="how sparsity is spread over layers")
    dense_layers: list[str] = Field([], description="layers kept dense (e.g. the first conv)")
    rescale_init: bool = Field(
        True, description="dynamic sparse training and random pruning at init: scale each unit's kept initial "
        "weights by sqrt(fan-in / kept fan-in), so a sparse net without BatchNorm still passes signal at high sparsity",
    )
    latency_batch_size: int = Field(1, ge=1, description="batch size of the latency measurement in metrics.json")
    tensorboard: bool = Field(
        False, description="also log per-epoch scalars (losses, accuracies, lr, density, weights moved) to "
        "OUT/tensorboard/ for TensorBoard (needs `pip install slimkit[tensorboard]`)",
    )
    storage: Literal["auto", "masked", "compressed"] = Field(
        "auto", description="pruned weights as masked dense tensors, or compressed (values + int32 indices: memory "
        "and time shrink with density); auto = compressed where it is measured faster: the large Linear layers of "
        "unstructured mest/set runs at high sparsity, and every layer of channel-scheme mest/set runs",
    )


# Sections listed last-first: pydantic orders fields from the last base to the first, so config.yaml
# and `--help` read training loop, run, then each method's section.
class RunConfig(
    DataEfficiencySettings, DSTSettings, IMPSettings, GradualSettings, PruneOnceSettings, RunSettings, TrainConfig
):
    """Every setting of a run. The training loop's settings (`TrainConfig`) and each method's are a
    section of their own, defined and validated beside the code they configure; the keys stay flat,
    so a recipe key, a CLI flag and a Python keyword are one name (`zeta` = `--zeta` = `RigL(zeta=)`)."""

    @model_validator(mode="after")
    def _sections_agree(self) -> RunConfig:
        """Rules that join this config's own keys with a method's section."""
        if self.method == "dense" and self.sparsity > 0:
            raise ValueError("sparsity > 0 needs a sparse method (e.g. --method gmp)")
        if self.method != "dense" and self.sparsity == 0:
            raise ValueError(f"method '{self.method}' needs a sparsity > 0 (e.g. --sparsity 0.9)")
        steps = self.imp_sparsities
        if steps and abs(steps[-1] - self.sparsity) > 1e-12:
            raise ValueError(f"imp_sparsities must increase from above 0 to the target sparsity {self.sparsity}")
        if self.method == "imp" and self.rewind_epoch >= self.epochs:
            raise ValueError(f"rewind_epoch ({self.rewind_epoch}) must be before the last epoch ({self.epochs})")
        if self.method == "imp" and (self.data_efficient or self.forgetting_stats):
            what = "data_efficient" if self.data_efficient else "forgetting_stats"
            why = ("its rounds retrain from rewound weights" if self.data_efficient
                   else "one tracker per round is not built")
            raise ValueError(f"{what} is not supported with method imp ({why})")
        if self.data_efficient and self.stats_epochs >= self.epochs:
            raise ValueError(f"stats_epochs ({self.stats_epochs}) must be shorter than the run (epochs={self.epochs}), "
                             "or nothing is left to train on the subset")
        return self


class YAMLAliasError(yaml.YAMLError):
    """A YAML document uses an anchor (`&name`) or an alias (`*name`)."""

    def __init__(self, event: yaml.Event) -> None:
        kind = f"alias *{event.anchor}" if isinstance(event, yaml.AliasEvent) else f"anchor &{event.anchor}"
        line = event.start_mark.line + 1 if event.start_mark else "?"
        super().__init__(f"YAML {kind} at line {line}: anchors and aliases are not allowed (a few hundred bytes of "
                         "nested aliases expand to gigabytes); write the values out")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading `1e-3` as a float (YAML 1.1 needs a dot: `1.0e-3`), and
    refusing anchors and aliases: no setting needs them, and an alias bomb in a small file would
    otherwise expand to gigabytes in memory and in the config.yaml written back."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:  # AliasEvent, or a node that defines an anchor
            raise YAMLAliasError(event)
        return super().compose_node(parent, index)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(config)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        else:
            lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(lines)


def make_config(values: dict[str, Any], cls: type[RunConfig] = RunConfig) -> RunConfig:
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"invalid config: {_explain(exc)}") from None


def parse_yaml(text: str) -> Any:
    """Plain data from YAML text, the way recipes are read (safe, `1e-3` is a float, no aliases)."""
    return yaml.load(text, Loader=_Loader)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = parse_yaml(read_user_text(path, ConfigError, "config file "))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except YAMLAliasError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return data


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults < YAML file < overrides (e.g. CLI flags)."""
    values = read_yaml(path) if path else {}
    values.update(overrides or {})
    return make_config(values)


# Keys that describe how a source run was trained, not how its pruned copy is fine-tuned: a
# fine-tuning starts from the defaults for them (CLI flags can still set them).
SOURCE_SCHEDULE_KEYS = ("data_efficient", "stats_epochs", "remove_forgetting_le", "remove_fraction", "forgetting_stats",
                        "imp_rounds", "imp_sparsities", "rewind_epoch", "imp_reinit")


FINETUNE_LR_FACTOR = 0.1  # fine-tuning a trained model (prune, prune-channels, QAT) starts at a tenth of its lr


def finetune_lr(source: dict[str, Any] | RunConfig, *, from_scratch: bool = False) -> float:
    """The default learning rate of a fine-tuning of the run with settings `source`: a tenth of its
    own, or all of it when the pruned architecture trains from new weights (`from_scratch`)."""
    values = source.model_dump() if isinstance(source, RunConfig) else source
    lr = values.get("lr", RunConfig.model_fields["lr"].default)
    return lr if from_scratch else lr * FINETUNE_LR_FACTOR


def finetune_values(source: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The settings of a fine-tuning that starts from a run with settings `source`: the source's
    model, data and optimiser settings, without its schedule keys, with `changes` applied."""
    kept = {key: value for key, value in source.items() if key not in SOURCE_SCHEDULE_KEYS}
    return {**kept, **changes}


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
