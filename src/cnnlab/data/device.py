"""Device-resident batching (DESIGN principle 3): the uint8 dataset is moved to the device once,
batches are index slices of a device-side permutation, and augmentation, normalisation and
input adaptation run on the device, vectorised over the batch. No DataLoader, no workers.

Order of operations for a batch (uint8 (B, C, H, W) -> float32 (B, C', H', W')):

    augment (uint8: shift with zero fill, flip) -> float -> spatial adaptation of the RAW
    image (pad with 0 = black, or resize) -> normalise per data channel -> channel adaptation

Padding the raw image before normalising means the border is black after normalisation too:
its value is (0 - mean) / std, exactly what a black pixel of the data would have become.

Determinism: the order of epoch ``e`` depends on (seed, e) only and the augmentation of its
step ``s`` on (seed, e, s) only; both are drawn on the CPU, so ``epoch(e, start_step=k)``
yields exactly batches k.. of ``epoch(e)``, on any device.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LUMINANCE_601 = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights for R, G, B
MAX_PAD = 8  # largest margin per side that is padded rather than resized
_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and standard deviation, in 0..1 units: x -> (x/255 - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        # Tuples of floats even when given lists or tensors: hashable, printable, comparable.
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if not self.mean or len(self.mean) != len(self.std):
            raise ValueError(
                "Normalization needs one mean and one std per channel. "
                f"Received: mean={self.mean!r}, std={self.std!r}"
            )
        if any(not s > 0 for s in self.std):
            raise ValueError(f"Normalization: every std must be > 0. Received: std={self.std!r}")


class InputAdapter:
    """Adapt data images (C,H,W) to a model's declared input (C',H',W')."""

    def __init__(self, data_shape: tuple[int, int, int], model_shape: tuple[int, int, int]):
        self.data_shape = _check_shape(data_shape, "data_shape")
        self.model_shape = _check_shape(model_shape, "model_shape")
        (c, h, w), (c2, h2, w2) = self.data_shape, self.model_shape
        if c == c2:
            self._channel_rule, channel_text = "same", ""
        elif c == 1 and c2 == 3:
            self._channel_rule, channel_text = "repeat", "1 channel repeated to 3"
        elif c == 3 and c2 == 1:
            self._channel_rule, channel_text = "luminance", "3 channels to 1 by ITU-R 601 luminance"
        else:
            raise ValueError(
                f"InputAdapter: cannot adapt {c} data channel(s) to the model's {c2}: only "
                f"equal counts, 1 -> 3 (repeat) and 3 -> 1 (luminance) have a meaning. "
                f"Received: data_shape={self.data_shape}, model_shape={self.model_shape}"
            )
        dh, dw = h2 - h, w2 - w
        if (dh, dw) == (0, 0):
            self._spatial_rule, spatial_text = "same", ""
        elif 0 <= dh <= 2 * MAX_PAD and 0 <= dw <= 2 * MAX_PAD and dh % 2 == 0 and dw % 2 == 0:
            self._spatial_rule = "pad"
            self.padding = (dw // 2, dw // 2, dh // 2, dh // 2)  # left, right, top, bottom
            spatial_text = (
                f"zero-padded by {dh // 2} pixels on each side"
                if dh == dw
                else f"zero-padded by {dh // 2} pixels top and bottom, {dw // 2} left and right"
            )
        else:
            self._spatial_rule = "resize"
            self._antialias = h2 < h or w2 < w
            spatial_text = "resized bilinearly" + (" with antialiasing" if self._antialias else "")
        texts = [t for t in (spatial_text, channel_text) if t]
        self.description = f"{h}x{w}x{c} -> {h2}x{w2}x{c2}: {'; '.join(texts)}" if texts else "none"

    @property
    def identity(self) -> bool:
        return self.description == "none"

    def __repr__(self) -> str:
        return f"InputAdapter({self.description})"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """float (N,C,H,W) -> (N,C',H',W'). Padding adds 0: black when ``x`` is unnormalised."""
        return self.adapt_channels(self.adapt_size(x))

    def adapt_size(self, x: torch.Tensor) -> torch.Tensor:
        """(N,C,H,W) -> (N,C,H',W'): zero padding or bilinear resize; channels unchanged."""
        if self._spatial_rule == "pad":
            return F.pad(x, self.padding)
        if self._spatial_rule == "resize":
            size = self.model_shape[1:]
            return F.interpolate(
                x, size=size, mode="bilinear", align_corners=False, antialias=self._antialias
            )
        return x

    def adapt_channels(self, x: torch.Tensor) -> torch.Tensor:
        """(N,C,H,W) -> (N,C',H,W): repeat gray to RGB, or RGB to luminance."""
        if self._channel_rule == "repeat":
            return x.expand(-1, 3, -1, -1)
        if self._channel_rule == "luminance":  # Python-float weights: no tensor to copy over
            r, g, b = LUMINANCE_601
            return x[:, 0:1] * r + x[:, 1:2] * g + x[:, 2:3] * b
        return x


def _check_shape(shape: tuple[int, int, int], argument: str) -> tuple[int, int, int]:
    try:
        values = tuple(operator.index(v) for v in shape)  # ints, NumPy ints, torch.Size
    except TypeError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise ValueError(
            f"{argument} must be (C, H, W), three positive integers. Received: {shape}"
        )
    return values  # type: ignore[return-value]


@functools.lru_cache(maxsize=32)
def _scale_shift(
    normalization: Normalization, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1/(255 std), mean/std) as (1, C, 1, 1) tensors on ``device``, made once per device."""
    std = torch.tensor(normalization.std, dtype=torch.float32)
    mean = torch.tensor(normalization.mean, dtype=torch.float32)
    scale, shift = (1 / (255 * std)).view(1, -1, 1, 1), (mean / std).view(1, -1, 1, 1)
    return scale.to(device), shift.to(device)


def preprocess(
    images: torch.Tensor, normalization: Normalization, adapter: InputAdapter
) -> torch.Tensor:
    """uint8 (N,C,H,W) on any device -> float32 model input (N,C',H',W') on the same device."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(
            f"preprocess: images must be uint8 (N, C, H, W). "
            f"Received: {images.dtype} of shape {tuple(images.shape)}"
        )
    if tuple(images.shape[1:]) != adapter.data_shape:
        raise ValueError(
            f"preprocess: images of shape {tuple(images.shape[1:])} do not match the adapter's "
            f"data_shape {adapter.data_shape}"
        )
    if len(normalization.mean) != images.shape[1]:
        raise ValueError(
            f"preprocess: {images.shape[1]} channel(s) but the normalization has "
            f"{len(normalization.mean)}. Received: mean={normalization.mean}"
        )
    scale, shift = _scale_shift(normalization, images.device)
    x = adapter.adapt_size(images.to(torch.float32))  # raw 0..255: padding 0 is black
    return adapter.adapt_channels(x.mul_(scale).sub_(shift))  # x is a new tensor: in place


@dataclass(frozen=True)
class Augmentation:
    """Random, per-image: translation by up to ``max_shift`` pixels (zero fill), and a
    horizontal flip with p=0.5 when ``flip`` (only where it keeps the class)."""

    max_shift: int = 2
    flip: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_shift, int) or self.max_shift < 0:
            raise ValueError(
                f"Augmentation: max_shift must be an integer >= 0. Received: {self.max_shift!r}"
            )


def augment(images: torch.Tensor, augmentation: Augmentation, seed: int) -> torch.Tensor:
    """Shift (and maybe flip) each image of a (B,C,H,W) batch, on its device. The random
    numbers come from a CPU generator seeded with ``seed``, so results do not depend on it."""
    shifts, flips = draw_augmentation(images.shape[0], augmentation, seed)
    return shift_and_flip(
        images, shifts.to(images.device), flips.to(images.device), augmentation.max_shift
    )


def draw_augmentation(
    n: int, augmentation: Augmentation, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(shifts int64 (n, 2) as (dy, dx) in -max_shift..max_shift, flips bool (n,)), on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    m = augmentation.max_shift
    shifts = torch.randint(-m, m + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return shifts, flips & augmentation.flip


def shift_and_flip(
    images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, max_shift: int
) -> torch.Tensor:
    """Image b flipped horizontally if ``flips[b]``, then moved by ``shifts[b]`` = (dy, dx)
    pixels (down, right), with zero fill. One gather over the zero-padded batch does both:

        out[b, :, y, x] = padded[b, :, y - dy + m, x' + m],
        x' = x - dx, or W-1 - (x - dx) when flipped (the flipped image, shifted)
    """
    n, c, height, width = images.shape
    m = max_shift
    padded = F.pad(images, (m, m, m, m)).reshape(n, c, -1)  # (B, C, (H+2m)(W+2m))
    ys = torch.arange(height, device=images.device)
    xs = torch.arange(width, device=images.device)
    rows = ys + m - shifts[:, :1]  # (B, H)
    cols = xs - shifts[:, 1:]  # (B, W), the column in the flipped-or-not image
    cols = torch.where(flips[:, None], width - 1 - cols, cols) + m
    index = rows[:, :, None] * (width + 2 * m) + cols[:, None, :]  # (B, H, W)
    index = index.reshape(n, 1, -1).expand(n, c, -1)
    return torch.gather(padded, 2, index).reshape(n, c, height, width)


class DeviceBatches:
    """Batches of a uint8 dataset kept on ``device``: (inputs float32, labels int64)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        device: torch.device | str,
        normalization: Normalization,
        adapter: InputAdapter,
        augmentation: Augmentation | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"DeviceBatches: images must be uint8 (N, C, H, W). "
                f"Received: {images.dtype} of shape {tuple(images.shape)}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DeviceBatches: batch_size must be >= 1. Received: {batch_size!r}")
        if tuple(images.shape[1:]) != adapter.data_shape:
            raise ValueError(
                f"DeviceBatches: images are {tuple(images.shape[1:])} but the adapter expects "
                f"data_shape={adapter.data_shape}"
            )
        self.device = torch.device(device)
        self.labels = self._device_labels(labels, images.shape[0])
        self.images = images.to(self.device)  # the one transfer: uint8, all of it
        self.batch_size = batch_size
        self.normalization = normalization
        self.adapter = adapter
        self.augmentation = augmentation
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last

    def _device_labels(self, labels: torch.Tensor, count: int) -> torch.Tensor:
        """``labels`` checked (one class id per image) and moved to the device."""
        if labels.shape != (count,):
            raise ValueError(
                f"DeviceBatches: expected {count} labels, one per image. "
                f"Received: labels of shape {tuple(labels.shape)}"
            )
        return labels.to(self.device, torch.int64)

    def _augment(
        self, images: torch.Tensor, labels: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch shifted and flipped; a class label stays as it is."""
        return shift_and_flip(images, shifts, flips, self.augmentation.max_shift), labels

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __repr__(self) -> str:
        return (
            f"DeviceBatches({self.images.shape[0]:,} images on {self.device}, "
            f"batch_size={self.batch_size}, steps={len(self)}, shuffle={self.shuffle}, "
            f"augmentation={self.augmentation}, seed={self.seed})"
        )

    def order(self, epoch: int) -> torch.Tensor:
        """The epoch's sample order on the device: a function of (seed, epoch) only."""
        n = self.images.shape[0]
        if not self.shuffle:
            return torch.arange(n, device=self.device)
        generator = torch.Generator().manual_seed(self.seed * _SEED_STRIDE + epoch)
        return torch.randperm(n, generator=generator).to(self.device)

    def step_seed(self, epoch: int, step: int) -> int:
        """The augmentation seed of ``step`` in ``epoch``: a function of (seed, epoch, step)."""
        return ((self.seed * _SEED_STRIDE + epoch) * _SEED_STRIDE + step) % (1 << 63)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs float32 (B,C',H',W'), labels int64 (B,)) on the device."""
        if not 0 <= start_step <= len(self):
            raise ValueError(
                f"DeviceBatches.epoch: start_step must be in 0..{len(self)}. "
                f"Received: start_step={start_step}"
            )
        return self._batches(epoch, start_step)

    def _batches(self, epoch: int, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order(epoch)
        steps = range(start_step, len(self))
        if self.augmentation is not None and len(steps):
            # Each step's numbers come from its own seed; drawn up front and copied over once,
            # so that no step waits on a host-to-device copy.
            drawn = [
                draw_augmentation(
                    self._batch_length(step), self.augmentation, self.step_seed(epoch, step)
                )
                for step in steps
            ]
            all_shifts = torch.cat([shifts for shifts, _ in drawn]).to(self.device)
            all_flips = torch.cat([flips for _, flips in drawn]).to(self.device)
        offset = 0
        for step in steps:
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            images, labels = self.images[index], self.labels[index]
            if self.augmentation is not None:
                n = index.shape[0]
                images, labels = self._augment(
                    images, labels, all_shifts[offset : offset + n], all_flips[offset : offset + n]
                )
                offset += n
            yield preprocess(images, self.normalization, self.adapter), labels

    def _batch_length(self, step: int) -> int:
        return min(self.batch_size, self.images.shape[0] - step * self.batch_size)
