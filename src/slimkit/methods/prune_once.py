"""Prune once, then train with fixed masks.

On a freshly initialised model this is pruning at initialisation followed by static sparse
training (SNIP, Lee et al. 2019; GraSP, Wang et al. 2020; SynFlow, Tanaka et al. 2020; random);
on a trained model it is one-shot pruning followed by fine-tuning (magnitude, Han et al. 2015;
OBD, LeCun et al. 1990; Taylor, Molchanov et al. 2019; OBS, Hassibi & Stork 1993, layer-wise as
in OBC, Frantar & Alistarh 2022, which also updates the surviving weights to compensate).
"""

from __future__ import annotations

from typing import Any, Iterable, Literal

from pydantic import Field
from torch import nn

from slimkit.importance import ScoringInputs, get_criterion, magnitude, obs_prune, synflow, synflow_schedule
from slimkit.methods.base import SparsityMethod, method_generator, rescale_to_fan_in
from slimkit.sparse.allocation import reachable_density
from slimkit.train.config import StrictModel
from slimkit.utils.progress import progress as show_progress
from slimkit.utils.renamed import take_renamed


class PruneOnce(SparsityMethod):
    compressed_storage = True  # masks never change after the first step

    def __init__(
        self,
        model: nn.Module,
        *,
        sparsity: float,
        criterion: str = "magnitude",
        batches: Iterable | None = None,
        num_batches: int = 1,
        input_shape: tuple[int, ...] | None = None,
        synflow_iterations: int = 100,
        obd_estimator: str = "hutchinson",
        seed: int = 0,
        rescale_init: bool = False,
        progress: str | None = None,
        **kwargs: Any,
    ) -> None:
        progress = take_renamed(kwargs, "progress_mode", "progress", progress, None, "PruneOnce")
        self.criterion_name = criterion
        self.criterion = None if criterion == "obs" else get_criterion(criterion)
        if criterion == "obs" and kwargs.get("scheme", "unstructured") != "unstructured":
            raise ValueError("obs prunes each row to the same count (unstructured); other schemes are not supported")
        if self.criterion is not None and "input_shape" in self.criterion.needs and input_shape is None:
            raise ValueError(f"{criterion} needs input_shape (the shape of one example)")
        if obd_estimator not in ("hutchinson", "fisher"):
            raise ValueError(f"obd_estimator must be 'hutchinson' or 'fisher', got {obd_estimator!r}")
        if synflow_iterations < 1:
            raise ValueError(f"synflow_iterations must be >= 1, got {synflow_iterations}")
        super().__init__(model, sparsity=sparsity, **kwargs)
        self.batches, self.num_batches = batches, num_batches
        self.input_shape, self.synflow_iterations, self.seed = input_shape, synflow_iterations, seed
        self.obd_estimator = obd_estimator
        self.rescale_init = rescale_init  # random pruning at init: the static control of dynamic sparse training
        # Display of the scoring passes (see slimkit.utils.progress); None: the trainer's config.progress.
        self.progress = progress

    def on_train_start(self, trainer) -> None:
        if self.batches is None:
            self.batches = trainer.loaders.train
        if self.progress is None:
            self.progress = trainer.config.progress
        super().on_train_start(trainer)

    def initialize(self) -> None:
        if self.sparsity == 0.0:
            return
        mode = self.progress or "auto"
        if self.criterion_name == "synflow":
            # Iterative pruning with an exponential schedule: scores are recomputed under the masks so far.
            # It starts at the densest masks the scheme allows (patterns keep at most 4 of 9 taps):
            # a step above that cannot be allocated.
            start = 1.0
            if self.scheme.fixed_density() is None:  # fixed-density schemes (N:M) ignore the schedule
                start = max(reachable_density(self.layers, self.scheme, self.dense_layers), 1.0 - self.sparsity)
            schedule = synflow_schedule(1.0 - self.sparsity, self.synflow_iterations, start_density=start)
            for density in show_progress(schedule, desc="synflow", mode=mode, unit="iterations"):
                scores = synflow(self.model, self.layers, ScoringInputs(input_shape=self.input_shape))
                self.prune_to(1.0 - density, scores)
            return
        if self.criterion_name == "obs":
            densities = self.densities(self.sparsity, magnitude(self.model, self.layers))
            masks = obs_prune(self.model, self.layers, self._batches(), densities, num_batches=self.num_batches,
                              progress=mode)
            self.set_masks(masks)
            return
        inputs = ScoringInputs(
            batches=self._batches(), num_batches=self.num_batches, progress=mode, input_shape=self.input_shape,
            generator=method_generator(self.seed, "criterion"),
        )
        options = {"estimator": self.obd_estimator} if self.criterion_name == "obd" else {}
        scores = self.criterion(self.model, self.layers, inputs, **options)
        masks = self.prune_to(self.sparsity, scores)
        if self.rescale_init:
            rescale_to_fan_in(self.layers, masks)

    def _batches(self) -> Iterable | None:
        needs_data = self.criterion is None or "batches" in self.criterion.needs  # obs calibrates on data
        if self.batches is None and needs_data:
            raise ValueError(f"criterion '{self.criterion_name}' needs data: pass batches=")
        return self.batches


class PruneOnceSettings(StrictModel):
    """The run-config section of one-shot pruning (`method`: a criterion name, or obs)."""

    prune_batches: int = Field(1, ge=1, description="batches scored by data-driven criteria (snip, grasp)")
    synflow_iterations: int = Field(100, ge=1, description="synflow pruning iterations")
    obd_estimator: Literal["hutchinson", "fisher"] = Field(
        "hutchinson", description="obd: Hessian diagonal estimator (Hutchinson, or the empirical Fisher)"
    )
