"""Size, compute, speed and memory of models and training runs."""

from slimkit.metrics.flops import FlopReport, count_flops
from slimkit.metrics.latency import LatencyReport, measure_latency, time_callable
from slimkit.metrics.memory import PeakRSS, current_rss_bytes, training_state_bytes
from slimkit.metrics.params import count_params, prunable_layers, state_bytes, weight_sparsity

__all__ = [
    "FlopReport", "LatencyReport", "PeakRSS", "count_flops", "count_params", "current_rss_bytes",
    "measure_latency", "prunable_layers", "state_bytes", "time_callable", "training_state_bytes", "weight_sparsity",
]
