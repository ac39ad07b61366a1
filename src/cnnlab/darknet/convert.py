"""Darknet files to cnnlab checkpoints and back: ``import_darknet`` and ``export_darknet``.

An imported model is the zoo model ``darknetcfg`` built from the cfg's text, so its checkpoint
rebuilds with ``create_model`` (``cnnlab.load``, ``evaluate``, ``predict``) and
``summary(cnnlab.load(run).model)`` works. Darknet's classifier feeds RGB in [0, 1], so the
checkpoint's normalisation is mean 0, std 1.

Exporting writes ``model.cfg`` + ``model.weights`` (+ ``model.names``) for a ``darknetcfg``
checkpoint, a zoo detector's (``yolo-scenes``, ``yolov3-tiny``, ...: their own cfg text, plus
``model.data`` for ``darknet detector test``), and a zoo model that is a chain of layers Darknet
has (``sequential.py``). Darknet feeds the network RGB in [0, 1]; a run trained on normalised
input (mean/std of its data) gets a first 1x1 linear convolution that normalises exactly,
``(x - mean) / std`` per channel, and later layer numbers (route, shortcut) move up by one.
Folding the normalisation into the first convolution instead would be wrong at the image
border, where Darknet pads the raw input with zeros, not the mean.

Unlike the rest of ``cnnlab.darknet`` this module imports ``cnnlab.models`` and
``cnnlab.train`` (for the checkpoint format).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.darknet.cfg import DarknetCfg, format_cfg, parse_cfg, read_cfg, set_options
from cnnlab.darknet.classify import read_names
from cnnlab.darknet.network import DarknetNet, build_network
from cnnlab.darknet.sequential import NotExportableError, export_sequential
from cnnlab.darknet.weights import WeightsInfo, load_weights, save_weights
from cnnlab.models import create_model, get_model_spec
from cnnlab.runtime.files import atomic_write
from cnnlab.runtime.version import __version__
from cnnlab.train.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    VERSION,
    checkpoint_file,
    load_checkpoint,
    new_run_dir,
    rebuild_model,
    save_checkpoint,
)
from cnnlab.train.config import TrainConfig

MODEL_NAME = "darknetcfg"
CFG_NAME, WEIGHTS_NAME, NAMES_NAME = "model.cfg", "model.weights", "model.names"
DATA_NAME = "model.data"  # a detector's classes and names for `darknet detector test`
HEAD_KINDS = ("region", "yolo")


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
    # max |difference| of the logits (a classifier) or of every head's raw map (a detector),
    # cnnlab's model vs the files read back, on one random input
    max_difference: float
    data: Path | None = None  # a detector's model.data
    compared: str = "logit"  # what max_difference compares: "logit" or "head map"
    normalized: bool = False  # a first layer normalises the input as the run did

    def __repr__(self) -> str:
        return (
            f"ExportResult({self.model!r} -> {str(self.folder)!r}, "
            f"max_{self.compared.replace(' ', '_')}_difference={self.max_difference:.2e})"
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


@dataclass(frozen=True)
class RunModel:
    """A run's model with its weights (eval mode), its class names and the input normalisation
    it was trained with (per channel; None for [0, 1] input, as Darknet feeds it)."""

    model: nn.Module
    classes: list[str] | None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def load_run_model(path: str | os.PathLike[str]) -> RunModel:
    """The model of a run folder or checkpoint file, rebuilt from its name and arguments, with
    its weights, classes and normalisation; clear errors for an incomplete checkpoint."""
    checkpoint = load_checkpoint(path)
    try:
        data = checkpoint["data"]
        classes = [str(c) for c in data["classes"]]
        normalization = data.get("normalization") or {"mean": [0.0], "std": [1.0]}
        mean = tuple(float(v) for v in normalization["mean"])
        std = tuple(float(v) for v in normalization["std"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{path} is an incomplete cnnlab checkpoint: cannot read its model or data "
            f"description ({type(error).__name__}: {error})"
        ) from None
    if len(mean) != len(std) or not all(s > 0 for s in std):
        raise ValueError(
            f"{path}: its data normalization must give one mean and one positive std per "
            f"channel. Received: mean={list(mean)}, std={list(std)}"
        )
    model = rebuild_model(checkpoint, checkpoint_file(path))
    if all(m == 0 for m in mean) and all(s == 1 for s in std):
        return RunModel(model.eval(), classes)
    return RunModel(model.eval(), classes, mean, std)


def _load_source(source: str | os.PathLike[str], seed: int) -> RunModel:
    """The model of a run folder / checkpoint, or a freshly initialised zoo model by name."""
    if Path(source).exists():
        return load_run_model(source)
    get_model_spec(str(source))  # an unknown name gets "did you mean"
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = create_model(str(source))
    return RunModel(model.eval(), None)


def _shift_references(section, by: int):
    """A layer section whose absolute references to earlier layers (route ``layers``,
    shortcut ``from``; non-negative numbers) move up ``by`` layers; relative ones stay."""
    if section.kind == "route":
        layers = tuple(v + by if v >= 0 else v for v in section.get("layers"))
        return set_options(section, layers=layers)
    if section.kind == "shortcut" and section.get("from") >= 0:
        return set_options(section, **{"from": section.get("from") + by})
    return section


@torch.no_grad()
def _prepend_normalization(
    cfg: DarknetCfg, network: DarknetNet, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[DarknetCfg, DarknetNet]:
    """The cfg and network with a first 1x1 linear convolution computing (x - mean) / std per
    channel (weights diag(1 / std), bias -mean / std), exactly what cnnlab's input
    normalisation does; the other layers keep their weights."""
    channels = network.plan.input_shape[0]
    if len(mean) not in (1, channels):
        raise ValueError(
            f"the run's normalization has {len(mean)} channel(s) but {cfg.source} takes "
            f"{channels}: expected 1 or {channels}. Received: mean={list(mean)}"
        )
    block = f"[net]\n[convolutional]\nfilters={channels}\nsize=1\nstride=1\npad=0\n"
    first = parse_cfg(block + "activation=linear\n", cfg.source).layers[0]
    layers = (first, *(_shift_references(section, 1) for section in cfg.layers))
    shifted = parse_cfg(format_cfg(DarknetCfg(cfg.source, cfg.net, layers)), cfg.source)
    normalizing = build_network(shifted).eval()
    scale = 1.0 / torch.tensor(std, dtype=torch.float64).expand(channels)
    shift = -torch.tensor(mean, dtype=torch.float64).expand(channels) * scale
    conv = normalizing.layers[0].conv
    conv.weight.copy_(torch.diag(scale)[:, :, None, None])
    conv.bias.copy_(shift)
    for new, old in zip(normalizing.layers[1:], network.layers, strict=True):
        new.load_state_dict(old.state_dict())
    return shifted, normalizing


def export_darknet(
    source: str | os.PathLike[str], out: str | os.PathLike[str], *, seed: int = 0
) -> ExportResult:
    """Write ``model.cfg`` and ``model.weights`` (and ``model.names``, and ``model.data`` for a
    detector) into the folder ``out``.

    ``source`` is a run folder, a checkpoint file, or a zoo model name (initialised with
    ``seed``). A model Darknet cannot express raises ``NotExportableError`` saying why.
    """
    found = _load_source(source, seed)
    model = found.model
    name = model.cnnlab.name
    if isinstance(model, DarknetNet):  # darknetcfg and the zoo's detectors keep their cfg
        cfg, darknet = model.plan.cfg, model
    else:
        _, darknet = export_sequential(model, model.cnnlab.input_shape)
        cfg = darknet.plan.cfg
    if found.mean is not None:
        cfg, darknet = _prepend_normalization(cfg, darknet, found.mean, found.std)
    cfg_text = format_cfg(cfg)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"out must be a folder. Received: out={os.fspath(out)!r} (a file)")
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = atomic_write(folder / CFG_NAME, lambda f: f.write(cfg_text.encode()))
    weights_path = save_weights(darknet, folder / WEIGHTS_NAME)
    names_path = data_path = None
    if found.classes is not None:
        lines = "".join(f"{c}\n" for c in found.classes).encode()
        names_path = atomic_write(folder / NAMES_NAME, lambda f: f.write(lines))
    heads = [layer.index for layer in darknet.plan.layers if layer.kind in HEAD_KINDS]
    if heads:
        count = darknet.plan.layers[heads[0]].settings["classes"]
        # Darknet opens the names file from its working folder: an absolute path
        names = f"names={names_path.resolve()}\n" if names_path else ""
        data_text = f"classes={count}\n{names}".encode()
        data_path = atomic_write(folder / DATA_NAME, lambda f: f.write(data_text))
    difference = _check_export(found, cfg_path, weights_path)
    compared = "head map" if heads else "logit"
    return ExportResult(
        folder, cfg_path, weights_path, names_path, name, difference, data_path, compared,
        found.mean is not None,
    )  # fmt: skip


@torch.no_grad()
def _check_export(found: RunModel, cfg: Path, weights: Path) -> float:
    """Read the written files back and compare them with the source model on one random input
    in [0, 1] (normalised for the model as the run normalised its data): the logits of a
    classifier, every head's raw map of a detector."""
    darknet: DarknetNet = build_network(cfg).eval()
    load_weights(darknet, weights, allow_truncated=False)
    x = torch.rand(1, *darknet.plan.input_shape, generator=torch.Generator().manual_seed(0))
    inputs = x
    if found.mean is not None:
        mean = torch.tensor(found.mean).reshape(-1, 1, 1)
        inputs = (x - mean) / torch.tensor(found.std).reshape(-1, 1, 1)
    ours = found.model(inputs)
    heads = tuple(layer.index for layer in darknet.plan.layers if layer.kind in HEAD_KINDS)
    if heads:
        theirs = darknet.forward_layers(x, heads)
        return max(float((a - theirs[h]).abs().max()) for a, h in zip(ours, heads, strict=True))
    last = len(darknet.layers) - 1
    logits = last - 1 if darknet.plan.output.kind == "softmax" else last  # cnnlab returns logits
    theirs = darknet.forward_layers(x, (logits,))[logits].flatten(1)
    return float((ours.flatten(1) - theirs).abs().max())


__all__ = [
    "ExportResult",
    "ImportResult",
    "NotExportableError",
    "RunModel",
    "export_darknet",
    "import_darknet",
    "load_run_model",
]
