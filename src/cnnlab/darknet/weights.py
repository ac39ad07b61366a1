"""Darknet's ``.weights`` files: a header, then every weighted layer's float32 values in order.

The format is that of pjreddie/darknet's load_weights_upto and save_weights_upto
(src/parser.c): three int32 (major, minor, revision), then ``seen`` (images trained on) as an
int64 when major * 10 + minor >= 2 (a 20-byte header, what Darknet writes) or as an int32 before
(16 bytes). Then per layer, skipping ``dontload``/``dontsave`` layers:

- convolutional: biases (n), and with batch_normalize scales, rolling means, rolling variances
  (n each), then the weights (n x c/groups x size x size);
- connected: biases, weights (outputs x inputs; inputs x outputs when major or minor > 1000,
  the transpose flag), then with batch_normalize scales, means, variances.

A file that ends exactly after a layer is a truncated ``*.conv.N`` file (``darknet partial``):
the first layers are loaded and the rest keep their values. Any other size is an error that
gives the expected and the actual byte counts.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.darknet import layers as L
from cnnlab.darknet.network import DarknetNet
from cnnlab.runtime.files import atomic_write

DEFAULT_VERSION = (0, 2, 0)  # what Darknet's save_weights writes: a 64-bit seen


@dataclass(frozen=True)
class WeightsHeader:
    major: int
    minor: int
    revision: int
    seen: int = 0

    @property
    def size(self) -> int:
        """16 bytes with a 32-bit ``seen``, 20 with a 64-bit one (parser.c's rule)."""
        wide = self.major * 10 + self.minor >= 2 and self.major < 1000 and self.minor < 1000
        return 20 if wide else 16

    @property
    def transpose(self) -> bool:
        """Connected weights stored inputs x outputs (major or minor above 1000)."""
        return self.major > 1000 or self.minor > 1000

    def to_bytes(self) -> bytes:
        seen = struct.pack("<q" if self.size == 20 else "<i", self.seen)
        return struct.pack("<3i", self.major, self.minor, self.revision) + seen


@dataclass(frozen=True)
class WeightsInfo:
    """What ``load_weights`` read: the header, and how many weighted layers the file held."""

    path: Path
    header: WeightsHeader
    loaded_layers: tuple[int, ...]  # Darknet layer indices whose weights were read
    weighted_layers: int  # layers with weights in the cfg (skipping dontload)

    @property
    def complete(self) -> bool:
        return len(self.loaded_layers) == self.weighted_layers

    def describe(self) -> str:
        """One line: what was loaded, and what was not for a truncated file."""
        if self.complete:
            return f"Loaded {self.path}: all {self.weighted_layers} weighted layers"
        if not self.loaded_layers:
            return f"Loaded {self.path}: no layers (the file holds only a header)"
        last = self.loaded_layers[-1]
        return (
            f"Loaded {self.path}: a truncated file with the first {len(self.loaded_layers)} of "
            f"{self.weighted_layers} weighted layers (layers 0-{last}); the later layers keep "
            "their initial weights"
        )


def _layer_tensors(
    module: torch.nn.Module, index: int, model: DarknetNet, header: WeightsHeader, reading: bool
) -> list[tuple[torch.Tensor, bool]]:
    """The tensors of one layer in file order, each with "stored transposed"."""
    section = model.plan.layers[index].section
    skip_scales = reading and bool(section.get("dontloadscales", 0))
    if isinstance(module, L.Convolutional):
        if module.bn is None and model.plan.layers[index].settings["batch_normalize"]:
            raise ValueError(
                f"layer {index}'s batch norm was folded into its convolution (fold_batch_norm): "
                "Darknet's file keeps them apart; write the weights of an unfolded model"
            )
        if module.bn is None:
            return [(module.conv.bias, False), (module.conv.weight, False)]
        bn = module.bn
        scales = [] if skip_scales else [bn.weight, bn.running_mean, bn.running_var]
        return [(t, False) for t in (bn.bias, *scales, module.conv.weight)]
    if isinstance(module, L.Connected):
        if module.bn is None:
            return [(module.linear.bias, False), (module.linear.weight, header.transpose)]
        bn = module.bn
        scales = [] if skip_scales else [bn.weight, bn.running_mean, bn.running_var]
        return [(bn.bias, False), (module.linear.weight, header.transpose)] + [
            (t, False) for t in scales
        ]
    return []


def _weighted(model: DarknetNet, header: WeightsHeader, reading: bool):
    skip_key = "dontload" if reading else "dontsave"
    for index, module in enumerate(model.layers):
        tensors = _layer_tensors(module, index, model, header, reading)
        if tensors and not model.plan.layers[index].section.get(skip_key, 0):
            yield index, tensors


def read_header(path: str | os.PathLike[str]) -> WeightsHeader:
    """The header of a weights file (checks that it is a file at all)."""
    file = Path(path)
    if file.is_dir():
        raise FileNotFoundError(f"weights must be a Darknet .weights file, not a folder: {file}")
    if not file.exists():
        raise FileNotFoundError(f"No such weights file: {file}")
    with open(file, "rb") as stream:
        start = stream.read(20)
    if len(start) < 16:
        raise ValueError(
            f"{file} is not a Darknet weights file: {len(start)} bytes, shorter than the "
            "16-byte header"
        )
    major, minor, revision = struct.unpack("<3i", start[:12])
    header = WeightsHeader(major, minor, revision)
    if header.size == 20 and len(start) < 20:
        raise ValueError(
            f"{file}: its version {major}.{minor} needs a 20-byte header; it is shorter"
        )
    seen = struct.unpack("<q" if header.size == 20 else "<i", start[12 : header.size])[0]
    return WeightsHeader(major, minor, revision, seen)


@torch.no_grad()
def load_weights(
    model: DarknetNet, path: str | os.PathLike[str], *, allow_truncated: bool = True
) -> WeightsInfo:
    """Read ``path`` into ``model`` (built from the same cfg); returns what was loaded.

    The file must hold exactly the cfg's weights, or (``allow_truncated``) exactly those of its
    first weighted layers. The header is kept as ``model.weights_header`` so that
    ``save_weights`` writes the file back byte for byte.
    """
    file = Path(path)
    header = read_header(file)
    layers = list(_weighted(model, header, reading=True))
    counts = [sum(t.numel() for t, _ in tensors) for _, tensors in layers]
    total = sum(counts)
    size = file.stat().st_size
    expected = header.size + 4 * total
    ends = np.cumsum([0, *counts])  # floats after 0, 1, ... layers
    payload = size - header.size
    whole = payload % 4 == 0 and payload // 4 in set(ends.tolist())
    if size != expected and not (whole and allow_truncated and payload // 4 < total):
        where = ""
        if size < expected:
            inside = int(np.searchsorted(ends, payload // 4, side="right")) - 1
            if inside < len(layers):
                where = f"; it ends inside layer {layers[inside][0]}"
        raise ValueError(
            f"{file} does not fit {model.plan.cfg.source}: expected {expected:,} bytes "
            f"({header.size}-byte header + {total:,} float32 of {len(layers)} weighted layers), "
            f"found {size:,} ({size - expected:+,} bytes){where}"
        )
    loaded = int(np.searchsorted(ends, payload // 4)) if size != expected else len(layers)
    values = np.fromfile(file, dtype="<f4", offset=header.size)
    position = 0
    for _, tensors in layers[:loaded]:
        for tensor, transposed in tensors:
            chunk = values[position : position + tensor.numel()]
            position += tensor.numel()
            source = torch.from_numpy(chunk.copy())
            if transposed:  # stored (inputs, outputs)
                source = source.reshape(tensor.shape[1], tensor.shape[0]).t()
            tensor.copy_(source.reshape(tensor.shape))
    model.weights_header = header
    return WeightsInfo(file, header, tuple(index for index, _ in layers[:loaded]), len(layers))


def save_weights(
    model: DarknetNet,
    path: str | os.PathLike[str],
    *,
    version: tuple[int, int, int] | None = None,
    seen: int | None = None,
) -> Path:
    """Write ``model``'s weights in Darknet's format (atomically).

    ``version`` (major, minor, revision) picks the header: (0, 2, 0), Darknet's, has a 64-bit
    ``seen`` (20 bytes); (0, 1, 0) the older 32-bit one (16 bytes). Both default to the header
    the weights were loaded with, else Darknet's.
    """
    loaded = getattr(model, "weights_header", None)
    if version is None:
        version = (loaded.major, loaded.minor, loaded.revision) if loaded else DEFAULT_VERSION
    if len(version) != 3 or not all(isinstance(v, int) and v >= 0 for v in version):
        raise ValueError(
            f"version must be three non-negative integers (major, minor, revision). "
            f"Received: version={version!r}"
        )
    if seen is None:
        seen = loaded.seen if loaded else 0
    header = WeightsHeader(*version, seen=seen)
    limit = 2**63 if header.size == 20 else 2**31
    if not 0 <= seen < limit:
        raise ValueError(f"seen must fit the {header.size}-byte header. Received: seen={seen}")

    def write(stream) -> None:
        stream.write(header.to_bytes())
        for _, tensors in _weighted(model, header, reading=False):
            for tensor, transposed in tensors:
                data = tensor.detach().to("cpu", torch.float32)
                data = data.t() if transposed else data
                stream.write(data.contiguous().numpy().astype("<f4", copy=False).tobytes())

    return atomic_write(path, write)


def weights_size(model: DarknetNet, version: tuple[int, int, int] = DEFAULT_VERSION) -> int:
    """The byte size of ``model``'s complete weights file with header ``version``."""
    header = WeightsHeader(*version)
    floats = sum(t.numel() for _, ts in _weighted(model, header, reading=True) for t, _ in ts)
    return header.size + 4 * floats


@torch.no_grad()
def randomize_weights(model: DarknetNet, seed: int = 0) -> DarknetNet:
    """Random weights that keep activations near unit scale (He-style convolutions, batch norm
    statistics near 1): for tests and benchmarks, written out with ``save_weights``."""
    generator = torch.Generator().manual_seed(seed)

    def normal(tensor: torch.Tensor, std: float, mean: float = 0.0) -> None:
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std + mean)

    def uniform(tensor: torch.Tensor, low: float, high: float) -> None:
        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)

    for module in model.layers:
        dense = module.conv if isinstance(module, L.Convolutional) else None
        if isinstance(module, L.Connected):
            dense = module.linear
        if dense is None:
            continue
        fan_in = dense.weight[0].numel()
        normal(dense.weight, (2.0 / fan_in) ** 0.5)
        if dense.bias is not None:
            normal(dense.bias, 0.1)
        if module.bn is not None:
            uniform(module.bn.weight, 0.5, 1.5)
            normal(module.bn.bias, 0.1)
            normal(module.bn.running_mean, 0.1)
            uniform(module.bn.running_var, 0.5, 1.5)
    return model
