"""Darknet model files in cnnlab: read, write, print and classify as Darknet does.

- ``cfg``: the ``.cfg`` parser (``read_cfg``, ``parse_cfg``): typed sections with line numbers.
- ``network``: shapes and FLOPs (``plan_network``) and the PyTorch module (``build_network``,
  ``DarknetNet``); ``layers``: Darknet's layers as modules.
- ``weights``: the ``.weights`` reader and writer (``load_weights``, ``save_weights``).
- ``table``: Darknet's layer table (``format_table``, ``table_data``).
- ``classify``: Darknet's classifier (image loading, letterbox, top-k).
- ``convert``: to and from cnnlab run folders (``import_darknet``, ``export_darknet``), with
  ``sequential`` mapping chains of PyTorch layers to Darknet sections. Not imported here:
  they import ``cnnlab.models`` and ``cnnlab.train``, which import this package's core.

Nothing here needs OpenCV; the tests and the benchmark use it as an independent reference.
"""

from cnnlab.darknet.cfg import CfgError, DarknetCfg, Section, parse_cfg, read_cfg
from cnnlab.darknet.network import (
    DarknetNet,
    LayerPlan,
    NetworkPlan,
    UnsupportedLayerError,
    build_network,
    plan_network,
)
from cnnlab.darknet.table import TableStyle, format_table, table_data
from cnnlab.darknet.weights import (
    WeightsHeader,
    WeightsInfo,
    load_weights,
    randomize_weights,
    read_header,
    save_weights,
)

__all__ = [
    "CfgError",
    "DarknetCfg",
    "DarknetNet",
    "LayerPlan",
    "NetworkPlan",
    "Section",
    "TableStyle",
    "UnsupportedLayerError",
    "WeightsHeader",
    "WeightsInfo",
    "build_network",
    "format_table",
    "load_weights",
    "parse_cfg",
    "plan_network",
    "randomize_weights",
    "read_cfg",
    "read_header",
    "save_weights",
    "table_data",
]
