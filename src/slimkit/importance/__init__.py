"""Importance criteria: how much each weight matters, behind one protocol and one registry.

    from slimkit.importance import ScoringInputs, get_criterion, register_criterion
    scores = get_criterion("obd")(model, layers, ScoringInputs(batches=loader, num_batches=4), estimator="fisher")

Built in: magnitude, random, snip, grasp, synflow, obd, taylor, bn_gamma, wanda (see `registry` for the
protocol and `register_criterion` to add your own), and layer-wise Optimal Brain Surgeon
(`obs_prune`), which prunes and compensates rather than scores.
"""

from slimkit.importance.registry import (
    CRITERIA, Criterion, CriterionFn, Scores, ScoringInputs, get_criterion, register_criterion, unregister_criterion,
)
from slimkit.importance.data_free import magnitude, random_scores, synflow, synflow_schedule
from slimkit.importance.gradient import grasp, snip, taylor
from slimkit.importance.hessian import obd
from slimkit.importance.batchnorm import bn_gamma
from slimkit.importance.obs import collect_input_hessians, obs_prune, obs_prune_weight
from slimkit.importance.activations import InputStatistics
from slimkit.importance.wanda import collect_input_norms, wanda, wanda_scores

__all__ = [
    "CRITERIA", "Criterion", "CriterionFn", "InputStatistics", "Scores", "ScoringInputs", "bn_gamma",
    "collect_input_hessians", "collect_input_norms", "get_criterion", "grasp", "magnitude", "obd", "obs_prune",
    "obs_prune_weight", "random_scores", "register_criterion", "snip", "synflow", "synflow_schedule", "taylor",
    "unregister_criterion", "wanda", "wanda_scores",
]
