"""The built-in op handlers, one module per op family; importing this package registers them."""

from slimkit.structured.trace.ops import (  # noqa: F401 - imported for their registrations
    attention, conv_linear, elementwise, functional, norms, shape, sizes, widths,
)
