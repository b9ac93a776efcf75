"""Arguments renamed so that a Python keyword, a CLI flag and a recipe key are one name: the old
keyword keeps working for now, with a DeprecationWarning that names the new one."""

from __future__ import annotations

import warnings
from typing import Any


def take_renamed(kwargs: dict[str, Any], old: str, new: str, value: Any, default: Any, owner: str) -> Any:
    """The value of keyword `new`, taken from the deprecated `old` in `kwargs` when given there
    (`value` is what the caller passed as `new`, `default` its default)."""
    if old not in kwargs:
        return value
    old_value = kwargs.pop(old)
    if value != default:
        raise TypeError(f"{owner}() got both {old}= and its new name {new}=; pass {new}= only")
    warnings.warn(f"{owner}({old}=...) is now {owner}({new}=...), the name of the --{new.replace('_', '-')} flag "
                  "and the recipe key", DeprecationWarning, stacklevel=3)
    return old_value
