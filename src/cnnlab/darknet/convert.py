"""Darknet files to cnnlab checkpoints and back: ``import_darknet`` and ``export_darknet``.

An imported model is the zoo model ``darknetcfg`` built from the cfg's text, so its checkpoint
rebuilds with ``create_model`` (``cnnlab.load``, ``evaluate``, ``predict``) and
``summary(cnnlab.load(run).model)`` works. Darknet's classifier feeds RGB in [0, 1], so the
checkpoint's normalisation is mean 0, std 1.

Exporting writes ``model.cfg`` + ``model.weights`` (+ ``model.names``) for a ``darknetcfg``
checkpoint, and for a zoo model that is a chain of layers Darknet has (``sequential.py``).

Unlike the rest of ``cnnlab.darknet`` this module imports ``cnnlab.models`` and
``cnnlab.train`` (for the checkpoint format).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.darknet.cfg import format_cfg, read_cfg
from cnnlab.darknet.classify import read_names
from cnnlab.darknet.network import DarknetNet, build_network
from cnnlab.darknet.sequential import NotExportableError, export_sequential
from cnnlab.darknet.weights import WeightsInfo, load_weights, save_weights
from cnnlab.models import create_model, get_model_spec
from cnnlab.models.darknet_cfg import DarknetCfgModel
from cnnlab.runtime.files import atomic_write
from cnnlab.runtime.version import __version__
from cnnlab.train.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    VERSION,
    load_checkpoint,
    new_run_dir,
    save_checkpoint,
)
from cnnlab.train.config import TrainConfig

MODEL_NAME = "darknetcfg"
CFG_NAME, WEIGHTS_NAME, NAMES_NAME = "model.cfg", "model.weights", "model.names"


@dataclass(frozen=True)
class ImportResult:
    """What ``import_darknet`` wrote: the run folder and what was read into it."""

    run_dir: Path
    checkpoint: Path
    weights: WeightsInfo
    input_shape: tuple[int, int, int]
    classes: tuple[str, ...]

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        return (
            f"ImportResult({str(self.run_dir)!r}, input={c}x{h}x{w}, "
            f"classes={len(self.classes)}, complete={self.weights.complete})"
        )


@dataclass(frozen=True)
class ExportResult:
    """What ``export_darknet`` wrote, and how far Darknet's module is from the source model."""

    folder: Path
    cfg: Path
    weights: Path
    names: Path | None
    model: str
    max_difference: float  # max |logit difference|, cnnlab vs the files read back, random input

    def __repr__(self) -> str:
        return (
            f"ExportResult({self.model!r} -> {str(self.folder)!r}, "
            f"max_difference={self.max_difference:.2e})"
        )


def import_darknet(
    cfg: str | os.PathLike[str],
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    names: str | os.PathLike[str] | None = None,
    data: str = "darknet",
) -> ImportResult:
    """A cnnlab run folder (``checkpoint.pt``) holding a Darknet classifier and its weights.

    ``names`` gives the class names (Darknet's names file, its first K lines for K outputs);
    without it they are "0", "1", ...
    ``data`` is the dataset name recorded for ``cnnlab evaluate`` (default: none known).
    """
    source = read_cfg(cfg)  # the file checks and line-numbered errors
    text = Path(cfg).read_text(encoding="utf-8")
    model = create_model(MODEL_NAME, cfg=text)
    info = load_weights(model, weights)
    count = model.cnnlab.num_classes
    classes = tuple(str(i) for i in range(count))
    if names is not None:  # Darknet reads names[index]: a longer list (ImageNet's 21k) is fine
        listed = read_names(names)
        if len(listed) < count:
            raise ValueError(
                f"names has {len(listed)} class names but {source.source} has {count} outputs: "
                f"expected at least {count}. Received: names={os.fspath(names)!r}"
            )
        classes = tuple(listed[:count])
    run_dir = new_run_dir(out, model=MODEL_NAME, data=data)
    run_dir.mkdir(parents=True, exist_ok=True)
    shape = model.cnnlab.input_shape
    config = TrainConfig(model=MODEL_NAME, data=data, model_kwargs={"cfg": text})
    checkpoint = {
        "format": FORMAT,
        "version": VERSION,
        "model": {
            "name": MODEL_NAME,
            "kwargs": {"cfg": text},
            "input_shape": list(shape),
            "num_classes": count,
        },
        "state_dict": model.state_dict(),
        "optimizer": None,  # not trained by cnnlab: nothing to resume
        "scheduler": None,
        "scaler": None,
        "rng": None,
        "epoch": 0,
        "step": 0,
        "global_step": 0,
        "config": asdict(config),
        "data": {
            "name": data,
            "shape": list(shape),
            "normalization": {"mean": [0.0] * shape[0], "std": [1.0] * shape[0]},
            "classes": list(classes),
            "adaptation": "",
            "source": f"darknet import of {source.source} and {os.fspath(weights)}",
        },
        "metrics": [],
        "best": None,
        "finished": True,
        "cnnlab_version": __version__,
    }
    path = save_checkpoint(checkpoint, run_dir / CHECKPOINT_NAME)
    return ImportResult(run_dir, path, info, shape, classes)


def _load_source(source: str | os.PathLike[str], seed: int) -> tuple[nn.Module, list[str] | None]:
    """The model of a run folder / checkpoint, or a freshly initialised zoo model by name."""
    path = Path(source)
    if path.exists():
        checkpoint = load_checkpoint(path)
        model = create_model(checkpoint["model"]["name"], **checkpoint["model"]["kwargs"])
        model.load_state_dict(checkpoint["state_dict"])
        return model.eval(), [str(c) for c in checkpoint["data"]["classes"]]
    get_model_spec(str(source))  # an unknown name gets "did you mean"
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = create_model(str(source))
    return model.eval(), None


def export_darknet(
    source: str | os.PathLike[str], out: str | os.PathLike[str], *, seed: int = 0
) -> ExportResult:
    """Write ``model.cfg`` and ``model.weights`` (and ``model.names``) into the folder ``out``.

    ``source`` is a run folder, a checkpoint file, or a zoo model name (initialised with
    ``seed``). A model Darknet cannot express raises ``NotExportableError`` saying why.
    """
    model, classes = _load_source(source, seed)
    name = model.cnnlab.name
    if isinstance(model, DarknetCfgModel):
        cfg_text = format_cfg(model.plan.cfg)
        darknet = model
    else:
        cfg_text, darknet = export_sequential(model, model.cnnlab.input_shape)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"out must be a folder. Received: out={os.fspath(out)!r} (a file)")
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = atomic_write(folder / CFG_NAME, lambda f: f.write(cfg_text.encode()))
    weights_path = save_weights(darknet, folder / WEIGHTS_NAME)
    names_path = None
    if classes is not None:
        lines = "".join(f"{c}\n" for c in classes).encode()
        names_path = atomic_write(folder / NAMES_NAME, lambda f: f.write(lines))
    difference = _check_export(model, cfg_path, weights_path)
    return ExportResult(folder, cfg_path, weights_path, names_path, name, difference)


@torch.no_grad()
def _check_export(model: nn.Module, cfg: Path, weights: Path) -> float:
    """Read the written files back and compare with the source model on one random input."""
    darknet: DarknetNet = build_network(cfg).eval()
    load_weights(darknet, weights, allow_truncated=False)
    x = torch.rand(1, *darknet.plan.input_shape, generator=torch.Generator().manual_seed(0))
    last = len(darknet.layers) - 1
    logits = last - 1 if darknet.plan.output.kind == "softmax" else last  # cnnlab returns logits
    theirs = darknet.forward_layers(x, (logits,))[logits].flatten(1)
    return float((model(x).flatten(1) - theirs).abs().max())


__all__ = [
    "ExportResult",
    "ImportResult",
    "NotExportableError",
    "export_darknet",
    "import_darknet",
]
