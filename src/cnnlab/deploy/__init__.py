"""Edge deployment: export a trained model to ONNX, OpenVINO or TFLite (fp32, int8), run it on
its runtime, and measure inference side by side.

    result = export_model(ExportConfig("runs/lenet-like-digits-...", format="onnx", int8=True))
    model = load_export(result.folder)           # ONNX Runtime, the int8 model
    probabilities = model.predict(uint8_images)  # (N, classes), like cnnlab.load(run).predict

The exporters and runtimes are optional (``pip install 'cnnlab[deploy]'``); this package imports
them only inside the functions that use them. ``model.json``'s schema is documented in
``cnnlab.deploy.manifest``.
"""

from cnnlab.deploy.export import (
    ExportConfig,
    ExportMismatchError,
    ExportResult,
    Verification,
    export_model,
)
from cnnlab.deploy.extras import MissingExtraError
from cnnlab.deploy.formats import ExportFormat
from cnnlab.deploy.manifest import (
    MANIFEST_NAME,
    ExportManifest,
    is_export_folder,
    read_manifest,
)
from cnnlab.deploy.runtimes import ExportedModel, load_export

__all__ = [
    "MANIFEST_NAME",
    "ExportConfig",
    "ExportFormat",
    "ExportManifest",
    "ExportMismatchError",
    "ExportResult",
    "ExportedModel",
    "MissingExtraError",
    "Verification",
    "export_model",
    "is_export_folder",
    "load_export",
    "read_manifest",
]
