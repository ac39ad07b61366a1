"""Several processes training one model: a torchrun process group and DistributedDataParallel.

DESIGN principle 8: scale out on the engines people already run. ``torchrun`` (or
``cnnlab train --nproc N``, which starts torchrun's agent) launches the processes and sets
``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``; :func:`join_process_group` joins them,
with gloo for CPU tensors and, where CUDA is available, nccl for CUDA ones (one group, the
backend chosen per tensor: ``cpu:gloo,cuda:nccl``). :class:`Ranks` is what the training loop
asks of the group; on one process every method is a no-op, so the loop has one code path.

How the work is shared (``batch_size`` is the global batch, images per optimizer step):

- every rank holds the whole uint8 dataset on its device and draws the same permutation per
  epoch from (seed, epoch); at step s, rank r takes rows ``[r b, (r + 1) b)`` of the global batch
  s, b = batch_size / world_size, and the same rows of its augmentation draws. An epoch sees
  each image once, and the ranks together see exactly the batches one process would;
- DistributedDataParallel averages the gradients over the ranks: the mean over the global
  batch when every rank has b images, so a model without batch norm follows the one-process
  run up to float rounding. Batch norm normalises with each rank's b images (and keeps rank
  0's running statistics, which DDP broadcasts at every forward); ``sync_bn`` makes it
  normalise over the global batch with ``torch.nn.SyncBatchNorm``, which runs on CUDA only;
- the loss, accuracy, image counts and evaluation (each rank scores a slice of the set) are
  all-reduced, so every rank returns the same numbers; only rank 0 prints and writes the run
  folder, and a resumed run reads the checkpoint on rank 0 and broadcasts it.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from cnnlab.data.device import DeviceBatches, draw_augmentation, preprocess, shift_and_flip
from cnnlab.runtime.devices import resolve_device
from cnnlab.train.evaluate import EvalResult, evaluate_model

T = TypeVar("T")
PrintFn = Callable[[str], None]
# What torchrun (and any env:// launcher) sets in each worker's environment.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
CPU = torch.device("cpu")


def launched_by_torchrun() -> bool:
    """True in a process that torchrun (or another env:// launcher) started."""
    return all(name in os.environ for name in LAUNCH_VARIABLES)


def _environment_int(name: str, default: int) -> int:
    text = os.environ.get(name, str(default))
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"the environment variable {name} must be an integer: {text!r}") from None


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group (``backend`` None: one process, no group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Rank 0: the process that prints and writes the run folder."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    def __repr__(self) -> str:
        if not self.distributed:
            return "Ranks(one process)"
        where = f"rank {self.rank} of {self.world_size}, local rank {self.local_rank}"
        return f"Ranks({where}, {self.backend})"

    def backend_for(self, device: torch.device) -> str | None:
        """The backend that carries ``device``'s tensors: gloo (CPU) or nccl (CUDA)."""
        if self.backend is None or ":" not in self.backend:
            return self.backend
        pairs = dict(part.split(":", 1) for part in self.backend.split(","))
        return pairs.get(device.type, self.backend)

    def device(self, choice: str) -> torch.device:
        """The device this rank trains on: ``auto``/``cuda`` take ``cuda:LOCAL_RANK``."""
        if not self.distributed:
            return resolve_device(choice)
        if choice == "mps":
            raise ValueError(
                "device='mps' cannot train on several processes (no distributed backend for "
                "MPS tensors); use device='cpu'. Received: device='mps'"
            )
        if choice.startswith("cuda:") and self.local_world_size > 1:
            raise ValueError(
                f"device={choice!r} would put all {self.local_world_size} processes of this "
                "machine on one GPU; use device='cuda' (or 'auto'): each process takes "
                f"cuda:LOCAL_RANK. Received: device={choice!r}"
            )
        if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
            return CPU
        device = resolve_device(choice if ":" in choice else f"cuda:{self.local_rank}")
        torch.cuda.set_device(device)
        return device

    def only_main(self, print_fn: PrintFn) -> PrintFn:
        """``print_fn`` on rank 0, silence elsewhere: the run speaks once."""
        return print_fn if self.main else _silent

    def from_main(self, make: Callable[[], T]) -> T:
        """``make()`` on rank 0, its value (or its ValueError/OSError) given to every rank."""
        if not self.distributed:
            return make()
        box: list[Any] = [None]
        if self.main:
            try:
                box[0] = ("value", make())
            except (ValueError, OSError) as error:
                box[0] = ("error", error)
        dist.broadcast_object_list(box, src=0, device=CPU)
        kind, payload = box[0]
        if kind == "error":
            raise payload
        return payload

    def check_batches(self, batch_size: int, images: int) -> None:
        """The global batch must split evenly and fit in the training set."""
        if not self.distributed:
            return
        if batch_size % self.world_size:
            raise ValueError(
                f"batch_size is the global batch, split evenly over the {self.world_size} "
                f"processes: it must be a multiple of {self.world_size}. "
                f"Received: batch_size={batch_size}"
            )
        if batch_size > images:
            raise ValueError(
                f"batch_size={batch_size} is more than the {images} training images; on "
                f"{self.world_size} processes every step needs a whole global batch"
            )

    def batches(self, batches: DeviceBatches) -> DeviceBatches | RankBatches:
        """What this rank trains on: ``batches`` itself, or its share of each global batch."""
        if not self.distributed:
            return batches
        return RankBatches(batches, self.rank, self.world_size)

    def model_to_train(self, model: nn.Module, device: torch.device, *, sync_bn: bool) -> nn.Module:
        """The module the optimizer steps run: ``model``, or DDP around it (which averages the
        gradients). ``model`` itself stays the one to save and evaluate; with ``sync_bn`` its
        batch norm layers are replaced by SyncBatchNorm in place (same parameters, same keys)."""
        if sync_bn and device.type != "cuda":
            raise ValueError(
                "sync_bn needs CUDA: torch.nn.SyncBatchNorm runs on GPUs only, and this run "
                f"trains on {device}. Received: sync_bn=True, device={device.type!r}"
            )
        if not self.distributed:
            return model
        if sync_bn:
            converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            assert converted is model, "a model whose root is a batch norm layer"
        device_ids = [device] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def agree(self, done: Any, stop: Any, *, totals: bool) -> None:
        """Make every rank see the same stop request and the same first NaN step; with
        ``totals`` also sum the loss, correct and image counts and take the longest time.

        ``done`` is the loop's record of the steps so far; ``stop`` its StopRequest.
        """
        if not self.distributed:
            return
        device = done.first_nonfinite.device
        never = torch.iinfo(torch.int64).max
        first = torch.where(done.first_nonfinite < 0, never, done.first_nonfinite)
        # MAX of (stop, seconds, -first step): one all-reduce for all three.
        latest = torch.tensor([float(stop.requested), done.seconds, 0.0], dtype=torch.float64)
        earliest = first.to(CPU).view(1)
        dist.all_reduce(earliest, op=dist.ReduceOp.MIN)
        dist.all_reduce(latest, op=dist.ReduceOp.MAX)
        stop.requested = bool(latest[0])
        first_step = int(earliest[0])
        first_step = -1 if first_step == never else first_step
        done.first_nonfinite = torch.tensor(first_step, device=device)
        if totals:
            sums = torch.stack(
                [
                    done.loss_sum.to(CPU, torch.float64),
                    done.correct.to(CPU, torch.float64),
                    torch.tensor(float(done.images), dtype=torch.float64),
                ]
            )
            dist.all_reduce(sums)
            done.loss_sum = sums[0].to(device, torch.float32)
            done.correct = sums[1].to(device, torch.int64)
            done.images, done.seconds = int(sums[2]), float(latest[1])

    def evaluate(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, **options: Any
    ) -> EvalResult:
        """``evaluate_model`` over the whole set: each rank scores a contiguous slice, the
        confusion matrices and losses are summed, the predictions gathered in order."""
        if not self.distributed:
            return evaluate_model(model, images, labels, **options)
        for buffer in model.buffers():  # rank 0's batch-norm statistics, as saved
            dist.broadcast(buffer, src=0)
        bounds = np.linspace(0, labels.shape[0], self.world_size + 1).round().astype(int)
        low, high = int(bounds[self.rank]), int(bounds[self.rank + 1])
        part = evaluate_model(model, images[low:high], labels[low:high], **options)
        confusion = torch.from_numpy(part.confusion)
        loss_sum = torch.tensor([part.loss * part.samples], dtype=torch.float64)
        seconds = torch.tensor([part.seconds], dtype=torch.float64)
        dist.all_reduce(confusion)
        dist.all_reduce(loss_sum)
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        longest = int(np.diff(bounds).max())
        padded = torch.full((longest,), -1, dtype=torch.int64)
        padded[: part.samples] = torch.from_numpy(part.predictions)
        gathered = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(gathered, padded)
        predictions = torch.cat(
            [gathered[r][: int(bounds[r + 1] - bounds[r])] for r in range(self.world_size)]
        )
        return EvalResult.from_counts(
            confusion.numpy(),
            loss_sum=float(loss_sum[0]),
            predictions=predictions.numpy(),
            seconds=float(seconds[0]),
        )


def _silent(text: str) -> None:
    """What the ranks other than 0 print."""


def current_ranks() -> Ranks:
    """The group this process belongs to (one process when none was joined)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    return Ranks(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=_environment_int("LOCAL_RANK", 0),
        local_world_size=_environment_int("LOCAL_WORLD_SIZE", 1),
        backend=str(dist.get_backend()),
    )


def join_process_group() -> Ranks:
    """Join torchrun's process group (once per process; it is left when the process exits),
    or return the group already joined, or one process when torchrun did not start this one."""
    if (dist.is_available() and dist.is_initialized()) or not launched_by_torchrun():
        return current_ranks()
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    atexit.register(_leave_process_group)
    return current_ranks()


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class RankBatches:
    """This rank's rows of every global batch of ``batches`` (full batches only).

    Step s of epoch e holds rows ``[r b, (r + 1) b)`` of the global batch s of
    ``batches.order(e)`` and of its augmentation draws (seeded by (seed, e, s) for the whole
    global batch), so the ranks' batches together are exactly the one-process batch.
    """

    def __init__(self, batches: DeviceBatches, rank: int, world_size: int):
        size = batches.batch_size
        if size % world_size or size > batches.images.shape[0]:
            raise ValueError(
                f"RankBatches: a global batch of {size} cannot be split over {world_size} "
                f"processes from {batches.images.shape[0]} images"
            )
        self.batches, self.rank, self.world_size = batches, rank, world_size
        self.per_rank = size // world_size
        self.steps = batches.images.shape[0] // size  # the remainder is dropped

    def __len__(self) -> int:
        return self.steps

    def __repr__(self) -> str:
        return (
            f"RankBatches(rank {self.rank} of {self.world_size}, {self.per_rank} of every "
            f"{self.batches.batch_size} images, steps={self.steps})"
        )

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs float32 (b,C',H',W'), labels int64 (b,)) on the device, from ``start_step``."""
        if not 0 <= start_step <= self.steps:
            raise ValueError(
                f"RankBatches.epoch: start_step must be in 0..{self.steps}. "
                f"Received: start_step={start_step}"
            )
        source, size, b = self.batches, self.batches.batch_size, self.per_rank
        order, rows = source.order(epoch), slice(self.rank * b, (self.rank + 1) * b)
        steps = range(start_step, self.steps)
        augmentation = source.augmentation
        if augmentation is not None and len(steps):
            # Drawn for the whole global batch, as one process would, then this rank's rows.
            drawn = [
                draw_augmentation(size, augmentation, source.step_seed(epoch, step))
                for step in steps
            ]
            shifts = torch.cat([s[rows] for s, _ in drawn]).to(source.device)
            flips = torch.cat([f[rows] for _, f in drawn]).to(source.device)
        for offset, step in enumerate(steps):
            index = order[step * size : (step + 1) * size][rows]
            images = source.images[index]
            if augmentation is not None:
                mine = slice(offset * b, (offset + 1) * b)
                images = shift_and_flip(images, shifts[mine], flips[mine], augmentation.max_shift)
            yield preprocess(images, source.normalization, source.adapter), source.labels[index]
