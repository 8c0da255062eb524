"""Throughput of the book's training loop against a plain torchvision ``DataLoader`` loop.

Both loops train the same network (a VGG of [STIM18] App. A with Glorot init, the same seed) with
plain SGD at the same batch size, precision (fp32 or bf16 autocast), memory format and
compilation. They differ only in how batches reach the model and in when the host waits:

- ``fast``: :func:`bnutils.core.train.train`. The uint8 data set lives on the device, a batch is an
  index gather, and per-step loss and accuracy stay on the device.
- ``plain``: the loop of the PyTorch CIFAR-10 tutorial. A map-style data set turns each image into
  a PIL image and applies ``ToTensor`` and ``Normalize`` (as ``torchvision.datasets.CIFAR10``
  does), a shuffling ``DataLoader`` with worker processes (pinned memory on a GPU) collates the
  batch, the host copies it to the device, and ``loss.item()`` feeds a running loss every step.

Timed segments alternate (fast, plain, fast, plain, ...) after a warm-up of each loop (which also
pays for compilation and starts the workers), so a machine shared with other jobs slows both
alike; the result is the median images per second of each loop and their ratio::

    python -m bnutils bench --device cpu
    python -m bnutils bench --device cuda --amp --channels-last --compile
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from itertools import cycle
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from tqdm import tqdm

from .core.data import Data, class_balanced_subset, load_cifar10
from .core.models import VGG, VGG_CONFIGS
from .core.train import train
from .infra import validate
from .infra.config import resolve_device
from .infra.report import MarkdownTable, device_name

LOOPS = ("fast", "plain")


class PlainCIFAR(Dataset):
    """Images as ``torchvision.datasets.CIFAR10`` holds and serves them: an ``N x H x W x C``
    uint8 array, each item a PIL image through ``ToTensor`` and ``Normalize`` (per call)."""

    def __init__(self, data: Data) -> None:
        self.images = data.x_train.permute(0, 2, 3, 1).cpu().numpy()
        self.targets = data.y_train.cpu().tolist()
        self.transform = transforms.Compose([
            transforms.ToTensor(),
            transforms.Normalize(data.mean.tolist(), data.std.tolist())])

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.targets[i]


def plain_batches(data: Data, batch_size: int, *, workers: int, seed: int,
                  pin_memory: bool) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled batches from a ``DataLoader`` over :class:`PlainCIFAR` (workers kept
    alive across epochs, incomplete last batches dropped as in the fast loop)."""
    loader = DataLoader(PlainCIFAR(data), batch_size=batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0,
                        pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))
    while True:
        yield from loader


def plain_loop(model: nn.Module, batches: Iterator[tuple[Tensor, Tensor]], steps: int, *,
               lr: float, device: torch.device, amp: bool = False,
               channels_last: bool = False, forward: nn.Module | None = None) -> float:
    """Train ``model`` for ``steps`` steps the tutorial way; return the seconds they took.

    ``forward`` is the module to call (``torch.compile(model)``, say); default ``model``.
    """
    forward = model if forward is None else forward
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    running_loss = 0.0
    t0 = time.perf_counter()
    for _, (x, y) in zip(range(steps), batches):
        x = x.to(device, non_blocking=True, memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = forward(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running_loss += loss.item()
    seconds = time.perf_counter() - t0
    if not np.isfinite(running_loss):
        raise FloatingPointError("the plain loop diverged; lower lr")
    return seconds


@dataclass(frozen=True)
class BenchResult:
    """Images per second of each timed segment of both loops, and the settings that ran."""

    fast: tuple[float, ...]
    plain: tuple[float, ...]
    settings: dict[str, Any]

    @property
    def ratio(self) -> float:
        """Median fast throughput over median plain throughput (> 1: the book's loop is faster)."""
        return float(np.median(self.fast) / np.median(self.plain))

    def table(self) -> MarkdownTable:
        rows = [[k, v] for k, v in self.settings.items()]
        for loop in LOOPS:
            ips = getattr(self, loop)
            rows.append([f"{loop} loop, images/s (median of {len(ips)})",
                         f"{np.median(ips):.0f}  (segments: {', '.join(f'{v:.0f}' for v in ips)})"])
        rows.append(["ratio fast / plain", f"{self.ratio:.2f}"])
        return MarkdownTable(["Benchmark", "Value"], rows)


def _check(steps: int, warmup: int, repeats: int, batch_size: int, workers: int, config: str,
           width: float, data: Data) -> None:
    for name, x in (("steps", steps), ("warmup", warmup), ("repeats", repeats),
                    ("batch_size", batch_size)):
        validate.positive_int(name, x)
    validate.nonnegative_int("workers", workers)
    validate.one_of("VGG config", config, VGG_CONFIGS)
    validate.positive_number("width", width)
    if not isinstance(data, Data) or data.x_train.dtype != torch.uint8 or data.x_train.ndim != 4:
        raise TypeError("data must be a bnutils.core.data.Data of uint8 N x C x H x W images")
    if batch_size > len(data.x_train):
        raise ValueError(f"batch_size must be at most the {len(data.x_train)} training images, "
                         f"got {batch_size}")


def benchmark(data: Data, *, config: str = "D", width: float = 0.125, batch_size: int = 128,
              steps: int = 40, warmup: int = 5, repeats: int = 3, lr: float = 0.01,
              device: str | torch.device = "auto", amp: bool = False,
              channels_last: bool = False, compile: bool = False, workers: int = 2,
              seed: int = 0) -> BenchResult:
    """Time ``repeats`` alternating segments of ``steps`` steps of each loop on ``data``.

    ``lr`` is small so that neither loop diverges while it is timed; the images per second of a
    segment count only its training steps (the fast loop's evaluations are excluded by
    :func:`bnutils.core.train.train`, the plain loop has none).
    """
    _check(steps, warmup, repeats, batch_size, workers, config, width, data)
    device = resolve_device(device)
    settings = dict(device=device_name(device), model=f"VGG-{config} (width x{width:g})",
                    batch_size=batch_size, precision="bf16 autocast" if amp else "fp32",
                    channels_last=channels_last, compile=compile, plain_workers=workers,
                    train_images=len(data.x_train), steps_per_segment=steps)
    fast_data = replace(data, x_test=data.x_test[:batch_size],
                        y_test=data.y_test[:batch_size]).to(device)
    nets = {}
    for loop in LOOPS:
        torch.manual_seed(seed)
        nets[loop] = VGG(config, width=width, n_classes=data.n_classes).to(device)
        if channels_last:
            nets[loop].to(memory_format=torch.channels_last)
    plain_forward = torch.compile(nets["plain"]) if compile else nets["plain"]
    batches = plain_batches(data, batch_size, workers=workers, seed=seed,
                            pin_memory=device.type == "cuda")
    common = dict(lr=lr, amp=amp, channels_last=channels_last)

    def run(loop: str, n: int) -> float:
        """Images per second of ``n`` steps of ``loop``."""
        if loop == "fast":
            h = train(nets["fast"], fast_data, steps=n, batch_size=batch_size, seed=seed,
                      eval_every=n, device=device, compile=compile, progress=False, **common)
            if h.diverged:
                raise FloatingPointError("the fast loop diverged; lower lr")
            return h.examples_per_s
        return n * batch_size / plain_loop(nets["plain"], batches, n, device=device,
                                           forward=plain_forward, **common)

    for loop in LOOPS:
        run(loop, warmup)
    ips: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    for loop, _ in tqdm(zip(cycle(LOOPS), range(2 * repeats)), total=2 * repeats, desc="bench"):
        ips[loop].append(run(loop, steps))
    return BenchResult(fast=tuple(ips["fast"]), plain=tuple(ips["plain"]), settings=settings)


def bench_cifar10(n_train: int = 10_000, **kw: Any) -> BenchResult:
    """:func:`benchmark` on a class-balanced subset of ``n_train`` CIFAR-10 training images
    (:func:`bnutils.core.data.load_cifar10`); keyword arguments go to :func:`benchmark`."""
    if validate.positive_int("n_train", n_train) and not 10 <= n_train <= 50_000:
        raise ValueError(f"n_train must be an integer in 10..50000, got {n_train!r}")
    return benchmark(class_balanced_subset(load_cifar10(), n_train // 10, 10), **kw)


def vgg_train_flops(config: str = "D", width: float = 1.0, head: tuple[int, ...] = (512,),
                    n_classes: int = 10, size: int = 32) -> float:
    """Floating-point operations of one training step per image of
    :class:`bnutils.core.models.VGG` (multiply and add counted as two): the forward pass of its
    convolutions and linear layers (normalisation, activations and pooling are negligible) times
    three, the usual estimate of forward plus backward. Used to turn a measured throughput into
    an estimate for other hardware."""
    validate.one_of("VGG config", config, VGG_CONFIGS)
    validate.positive_number("width", width)
    forward, c, side = 0.0, 3, size
    for v in VGG_CONFIGS[config]:
        if v == "M":
            side //= 2
            continue
        out = max(1, round(v * width))
        forward += 2 * 9 * c * out * side * side
        c = out
    sizes = [c, *(max(1, round(h * width)) for h in head), n_classes]
    forward += sum(2 * a * b for a, b in zip(sizes, sizes[1:]))
    return 3 * forward
