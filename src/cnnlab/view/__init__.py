"""``cnnlab view``: a local browser page that opens a trained network layer by layer.

``session`` opens a run, an export or a zoo model and runs it with hooks; ``trace`` explains one
cell of a convolution or pooling map with ``cnnlab.ops`` (the model's real weights) and steps
the lecture's examples; ``server`` is the FastAPI app that serves the page in ``static/``. This
``__init__`` imports nothing, so ``import cnnlab`` never needs FastAPI or uvicorn.
"""
