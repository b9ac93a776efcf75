"""Physical channel removal: slice every tensor of a ChannelGraph, then fix the module attributes
that describe widths (in_channels, num_features ...). The result is an ordinary, smaller nn.Module."""

from __future__ import annotations

import copy
from typing import Callable, Iterable, Literal, Sequence

import torch
from torch import nn

from slimkit.structured.channels import ChannelGraphError
from slimkit.structured.graph import ChannelGraph, build_graph
from slimkit.structured.importance import channel_criterion, taylor_gradients, unit_scores
from slimkit.structured.select import select_units
from slimkit.structured.rescale import apply_query_scales, rescale_attention_queries
from slimkit.structured.resize import replace_tensors, sync_width_attributes
from slimkit.structured.trace.capture import example_inputs


def remove_units(
    model: nn.Module, graph: ChannelGraph, removed: Iterable[int], *, inplace: bool = False
) -> nn.Module:
    """Cut the channels of the `removed` units (union-find roots of `graph`) out of `model`."""
    removed = set(removed)
    target = model if inplace else copy.deepcopy(model)
    apply_query_scales(target, graph, torch.tensor(sorted(removed), dtype=torch.long))
    by_tensor: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for (qualname, dim), ids in graph.tensors.items():
        roots = graph.uf.roots(ids).tolist()
        keep = torch.tensor([i for i, r in enumerate(roots) if r not in removed], dtype=torch.long)
        if keep.numel() < len(roots):
            if keep.numel() == 0:
                raise ValueError(f"pruning would remove every channel of '{qualname}' (dim {dim})")
            by_tensor.setdefault(qualname, []).append((dim, keep))
    sliced: dict[str, torch.Tensor] = {}
    for qualname, cuts in by_tensor.items():
        module_name, _, attr = qualname.rpartition(".")
        tensor = getattr(target.get_submodule(module_name), attr).detach()
        for dim, keep in cuts:
            tensor = tensor.index_select(dim, keep.to(tensor.device))
        sliced[qualname] = tensor.clone()
    replace_tensors(target, sliced)
    for record in graph.modules.values():  # norms without affine tensors still carry a width
        module = target.get_submodule(record.name)
        if isinstance(module, nn.LayerNorm) and module.weight is None and record.in_ids is not None:
            kept = sum(r not in removed for r in graph.uf.roots(record.in_ids).tolist())
            module.normalized_shape = (kept,)
        elif record.in_ids is not None:
            rescale_attention_queries(module, old_width=record.in_ids.numel())
    sync_width_attributes(target)
    return target


def prune_channels(
    model: nn.Module,
    inputs: Sequence[int] | torch.Tensor | tuple,
    prune_ratio: float = 0.5,
    *,
    criterion: str = "l1",
    scope: Literal["local", "global"] = "local",
    round_to: int = 1,
    min_keep: int = 1,
    min_keep_fraction: float = 0.0,
    ignored_layers: Iterable[str] = (),
    leaf_modules: Iterable[str | type] = (),
    batch: Sequence[torch.Tensor] | None = None,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    seed: int = 0,
    inplace: bool = False,
) -> nn.Module:
    """Remove `prune_ratio` of the prunable channels of `model` (a copy unless `inplace`).

    `inputs` is the input shape without the batch dim, or example input tensors. The model's outputs
    and `ignored_layers` keep their widths. `batch` = (inputs, targets) is needed for `taylor`.
    """
    if not 0 < prune_ratio < 1:
        raise ValueError(f"prune_ratio must be in (0, 1), got {prune_ratio}")
    example_inputs(inputs)  # validates the shape before any work
    spec = channel_criterion(criterion)  # an unknown name fails before tracing
    graph = build_graph(model, inputs, leaf_modules=leaf_modules, ignored_layers=ignored_layers)
    saved_grads = {name: p.grad for name, p in model.named_parameters()}
    if spec is not None and spec.needs_grad:
        if batch is None:
            raise ValueError(f"criterion '{criterion}' needs batch=(inputs, targets)")
        was_training = model.training
        taylor_gradients(model.eval(), batch, loss_fn)
        model.train(was_training)
    scores = unit_scores(graph, criterion, seed=seed)
    for name, p in model.named_parameters():  # the caller's model leaves exactly as it came
        p.grad = saved_grads[name]
    selection = select_units(
        graph.groups(), scores, prune_ratio, scope=scope, normalize=criterion not in ("bn_gamma", "random"),
        min_keep=min_keep, min_keep_fraction=min_keep_fraction, round_to=round_to,
    )
    pruned = remove_units(model, graph, selection.removed, inplace=inplace)
    check_runs(pruned, graph, inputs)
    return pruned


def _tensors(value: object) -> list[torch.Tensor]:
    """The tensors in a (nested) model output, in the order fx lists them."""
    if isinstance(value, torch.Tensor):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else []
    return [t for item in items for t in _tensors(item)]


def check_runs(model: nn.Module, graph: ChannelGraph, inputs: Sequence[int] | torch.Tensor | tuple) -> None:
    """A last guard: the pruned model runs on the example inputs, with outputs of the traced shapes."""
    was_training = model.training
    try:
        with torch.no_grad():
            outputs = model.eval()(*example_inputs(inputs))
        shapes = [tuple(t.shape) for t in _tensors(outputs)]
        problem = None if shapes == graph.output_shapes else f"outputs {shapes} instead of {graph.output_shapes}"
    except Exception as exc:  # noqa: BLE001 - any failure of the pruned model is reported the same way
        problem = f"{type(exc).__name__}: {exc}"
    finally:
        model.train(was_training)
    if problem:
        raise ChannelGraphError(
            f"the pruned {type(model).__name__} is inconsistent ({problem}). This is a slimkit bug, please report "
            "it; meanwhile name the layer involved in ignored_layers= or leaf_modules="
        )
