"""Structured channel pruning with physical removal (see docs/structured.md)."""

from slimkit.structured.graph import ChannelGraph, ChannelGraphError, build_graph
from slimkit.structured.importance import CHANNEL_CRITERIA, unit_scores
from slimkit.structured.select import select_units
from slimkit.structured.prune import prune_channels, remove_units
from slimkit.structured.trace.registry import (
    register_function_handler, register_module_handler, register_width_attributes,
)

__all__ = [
    "CHANNEL_CRITERIA", "ChannelGraph", "ChannelGraphError", "build_graph", "prune_channels", "register_function_handler",
    "register_module_handler", "register_width_attributes", "remove_units", "select_units", "unit_scores",
]
