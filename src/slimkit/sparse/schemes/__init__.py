"""Sparsity schemes: which weights of a layer may be removed together.

A scheme turns importance scores (same shape as the weight; higher = more important = keep)
and a target density (fraction of weights kept) into a boolean keep-mask that respects its
structure, and checks masks built elsewhere. The structure is what makes sparsity pay off:
whole channels shrink the layer, blocks and N:M groups map onto sparse GEMM kernels, 3x3
patterns onto compiler-generated conv code; unstructured sparsity only saves storage.
`units(weight_shape)` gives the same structure as units (`slimkit.sparse.units`), which is what
dynamic sparse training mutates, in masked and compressed storage alike.
"""

from __future__ import annotations

import inspect

from slimkit.sparse.schemes.base import Scheme, Shape
from slimkit.sparse.schemes.block import BlockScheme
from slimkit.sparse.schemes.channel import ChannelScheme
from slimkit.sparse.schemes.nm import NMScheme
from slimkit.sparse.schemes.pattern import PATTERNS, PatternScheme
from slimkit.sparse.schemes.unstructured import UnstructuredScheme
from slimkit.sparse.units import PATTERN_DENSITY

SCHEMES: dict[str, type[Scheme]] = {
    scheme.name: scheme for scheme in (UnstructuredScheme, ChannelScheme, BlockScheme, PatternScheme, NMScheme)
}


def make_scheme(name: str, **options: object) -> Scheme:
    """Build a scheme from its config name, with clear errors for typos in names or options."""
    if name not in SCHEMES:
        raise ValueError(f"unknown sparsity scheme {name!r}; choose one of: {', '.join(sorted(SCHEMES))}")
    scheme = SCHEMES[name]
    try:
        inspect.signature(scheme).bind(**options)
    except TypeError as error:
        raise ValueError(f"bad options for the {name} scheme: {error}") from None
    return scheme(**options)


__all__ = [
    "PATTERNS", "PATTERN_DENSITY", "SCHEMES", "BlockScheme", "ChannelScheme", "NMScheme", "PatternScheme", "Scheme",
    "Shape", "UnstructuredScheme", "make_scheme",
]
