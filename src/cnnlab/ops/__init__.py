"""First principles: reference convolution and pooling in NumPy, and step-by-step traces.

``conv2d`` and ``pool2d`` reproduce PyTorch's arithmetic in plain NumPy; ``explain_conv`` and
``explain_pool`` return every number behind one output cell; ``SLIDE_EXAMPLES`` holds the
lecture's worked examples; ``feature_maps_figure`` draws Figure 14-6 for any image.
"""

from cnnlab.ops.conv import POOL_MODES, PoolMode, conv2d, output_size, pool2d
from cnnlab.ops.explain import (
    ChannelTrace,
    ConvTrace,
    PoolTrace,
    explain_conv,
    explain_pool,
    format_number,
)
from cnnlab.ops.figures import feature_maps_figure
from cnnlab.ops.kernels import (
    INPUT_FORMATS,
    KERNEL_DESCRIPTIONS,
    KERNELS,
    load_input,
    parse_kernel,
)
from cnnlab.ops.slides import (
    SLIDE_2D,
    SLIDE_2D_STRIDE2,
    SLIDE_EXAMPLES,
    SLIDE_POOL_AVG,
    SLIDE_POOL_MAX,
    SLIDE_RGB,
    ConvExample,
    PoolExample,
)

__all__ = [
    "INPUT_FORMATS",
    "KERNELS",
    "KERNEL_DESCRIPTIONS",
    "POOL_MODES",
    "SLIDE_2D",
    "SLIDE_2D_STRIDE2",
    "SLIDE_EXAMPLES",
    "SLIDE_POOL_AVG",
    "SLIDE_POOL_MAX",
    "SLIDE_RGB",
    "ChannelTrace",
    "ConvExample",
    "ConvTrace",
    "PoolExample",
    "PoolMode",
    "PoolTrace",
    "conv2d",
    "explain_conv",
    "explain_pool",
    "feature_maps_figure",
    "format_number",
    "load_input",
    "output_size",
    "parse_kernel",
    "pool2d",
]
