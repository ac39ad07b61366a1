"""``model.json``: what an export folder holds and how to feed its model, without cnnlab.

Schema (``format: "cnnlab-export"``, ``version: 1``); every key is always present:

- ``runtime``: ``"onnx"``, ``"openvino"`` or ``"tflite"``; ``precision``: ``"fp32"`` or
  ``"int8"``, the model ``load_export`` runs by default.
- ``files``: precision -> ``{"file", "bytes", "sha256"}``, relative to the folder (an int8
  export keeps its fp32 parent, the reference it was quantised from). OpenVINO's ``file`` is
  the ``.xml``; its weights ``.bin`` lie beside it (``bytes`` and ``sha256`` cover both).
- ``model``: the zoo name, its ``kwargs``, ``input_shape`` [C', H', W'] and ``num_classes``.
- ``input``: ``{"name", "dtype", "shape", "batch"}``. The network's input is float32
  [N, C', H', W'] already preprocessed; ``batch`` is ``"dynamic"`` or the fixed N (TFLite).
  A full-int8 TFLite model takes int8 and states its ``scale`` and ``zero_point``:
  ``q = round(x / scale) + zero_point``.
- ``output``: ``{"name", "shape", "meaning"}``: logits [N, classes]; softmax gives
  probabilities (an int8 output states ``scale`` and ``zero_point`` too).
- ``preprocessing``: how uint8 images [N, C, H, W] of ``data_shape`` become the input, in
  this order: x = float(image); resize or zero-pad to H' x W' (``adapter``: ``rule`` is
  ``"same"``, ``"pad"`` with ``padding`` [left, right, top, bottom], or ``"resize"``,
  bilinear, half-pixel centres, with ``antialias``); x = (x / 255 - mean[c]) / std[c];
  channels adapted (``channels``: ``"same"``, ``"repeat"`` 1 -> 3, or ``"luminance"``
  3 -> 1 with ITU-R BT.601 weights). ``description`` says the same in words.
- ``classes``: the class names, index = output column.
- ``source``: ``{"kind": "run" | "zoo", "path", "trained_on", "checkpoint_sha256"}``.
- ``verification``: precision -> what ``export_model`` measured against PyTorch (see
  ``cnnlab.deploy.export.Verification.to_dict``).
- ``exporter``: cnnlab, torch and each exporter's version; ``created``: ISO 8601 time (UTC).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.runtime.files import write_json

MANIFEST_NAME = "model.json"
MANIFEST_FORMAT = "cnnlab-export"
MANIFEST_VERSION = 1
RUNTIMES = ("onnx", "openvino", "tflite")
PRECISIONS = ("fp32", "int8")
_KEYS = (
    "runtime",
    "precision",
    "files",
    "model",
    "input",
    "output",
    "preprocessing",
    "classes",
    "source",
    "verification",
    "exporter",
    "created",
)


@dataclass(frozen=True, repr=False)
class ExportManifest:
    """The content of ``model.json`` (see the module docstring for every key)."""

    runtime: str
    precision: str
    files: dict[str, dict[str, Any]]
    model: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any]
    preprocessing: dict[str, Any]
    classes: tuple[str, ...]
    source: dict[str, Any]
    verification: dict[str, Any] = field(default_factory=dict)
    exporter: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(
                f"runtime must be one of {', '.join(RUNTIMES)}. Received: runtime={self.runtime!r}"
            )
        if self.precision not in self.files:
            raise ValueError(
                f"precision {self.precision!r} has no file: files lists {sorted(self.files)}"
            )
        for precision in self.files:
            if precision not in PRECISIONS:
                raise ValueError(
                    f"files: precision must be one of {', '.join(PRECISIONS)}. "
                    f"Received: {precision!r}"
                )
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    @property
    def data_shape(self) -> tuple[int, int, int]:
        c, h, w = (int(v) for v in self.preprocessing["data_shape"])
        return c, h, w

    @property
    def model_shape(self) -> tuple[int, int, int]:
        c, h, w = (int(v) for v in self.model["input_shape"])
        return c, h, w

    def to_dict(self) -> dict[str, Any]:
        data = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION}
        data.update({key: getattr(self, key) for key in _KEYS})
        data["classes"] = list(self.classes)
        return data

    def __repr__(self) -> str:
        return (
            f"ExportManifest({self.model.get('name')!r}, {self.runtime} {self.precision}, "
            f"{len(self.classes)} classes, files={sorted(self.files)})"
        )


def file_entry(folder: Path, name: str, *extra: str) -> dict[str, Any]:
    """``{"file", "bytes", "sha256"}`` of ``name`` in ``folder`` (with ``extra`` files counted:
    OpenVINO's weights beside its ``.xml``)."""
    digest = hashlib.sha256()
    size = 0
    for part in (name, *extra):
        data = (folder / part).read_bytes()
        digest.update(data)
        size += len(data)
    return {"file": name, "bytes": size, "sha256": digest.hexdigest()}


def write_manifest(folder: str | os.PathLike[str], manifest: ExportManifest) -> Path:
    """``model.json`` in ``folder``, written atomically."""
    return write_json(Path(folder) / MANIFEST_NAME, manifest.to_dict())


def read_manifest(folder: str | os.PathLike[str]) -> ExportManifest:
    """The ``model.json`` of an export folder, checked; the errors name the file and the key."""
    path = Path(folder)
    if not path.exists():
        raise FileNotFoundError(f"No such export folder: {path}")
    if not path.is_dir():
        raise ValueError(f"{path} is a file, expected an export folder written by cnnlab export")
    file = path / MANIFEST_NAME
    if not file.exists():
        raise FileNotFoundError(
            f"No {MANIFEST_NAME} in {path}: expected an export folder written by cnnlab export "
            f"(it holds {MANIFEST_NAME} and the model file)"
        )
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{file} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ValueError(
            f"{file} is not a cnnlab export description: expected format={MANIFEST_FORMAT!r}"
        )
    if data.get("version") != MANIFEST_VERSION:
        raise ValueError(
            f"{file} has version {data.get('version')!r}; this cnnlab reads version "
            f"{MANIFEST_VERSION}"
        )
    missing = [key for key in _KEYS if key not in data]
    if missing:
        raise ValueError(f"{file} lacks the key(s) {', '.join(missing)}")
    try:
        manifest = ExportManifest(**{key: data[key] for key in _KEYS})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{file}: {error}") from None
    for precision, entry in manifest.files.items():
        if not (path / str(entry.get("file", ""))).is_file():
            raise FileNotFoundError(
                f"{file} names {entry.get('file')!r} for {precision}, but {path} has no such file"
            )
    return manifest


def is_export_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like an export folder (``model.json``, or a model file and no
    checkpoint): what ``cnnlab predict`` and ``evaluate`` dispatch on."""
    folder = Path(path)
    if not folder.is_dir():
        return False
    if (folder / MANIFEST_NAME).exists():
        return True
    if (folder / "checkpoint.pt").exists():
        return False
    return any(any(folder.glob(pattern)) for pattern in ("*.onnx", "*.xml", "*.tflite"))
