"""Memory-economic execution: layers that store only their nonzero weights (values + int32
indices) and train without ever building a dense weight or a dense weight gradient."""

import warnings

# slimkit checks every structure it builds or loads itself (structure.check_structure).
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

from slimkit.compressed.channels import ChannelConv2d, ChannelLayer, ChannelLinear  # noqa: E402
from slimkit.compressed.convert import (  # noqa: E402
    LAYOUTS, can_compress, compress, compressed_layers, decompress, layouts_of, prepare_for_loading,
)
from slimkit.compressed.kernels import native_kernels_available  # noqa: E402
from slimkit.compressed.layers import CompressedConv2d, CompressedLayer, CompressedLinear, CsrLayer  # noqa: E402
from slimkit.compressed.mutation import apply_mutation, choose_mutation, importance_of, kept_count  # noqa: E402

__all__ = [
    "LAYOUTS", "ChannelConv2d", "ChannelLayer", "ChannelLinear", "CompressedConv2d", "CsrLayer", "layouts_of", "CompressedLayer", "CompressedLinear", "apply_mutation", "can_compress", "choose_mutation",
    "compress", "compressed_layers", "decompress", "importance_of", "kept_count", "native_kernels_available",
    "prepare_for_loading",
]
