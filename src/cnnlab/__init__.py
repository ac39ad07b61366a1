"""cnnlab: a workbench for convolutional neural networks and the hardware that runs them."""

__version__ = "0.1.0"
