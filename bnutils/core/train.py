"""The one training loop of the book: plain SGD with a fixed learning rate ([STIM18] App. A).

    history = train(model, data, steps=3000, lr=0.1, batch_size=128, seed=0, eval_every=100)
    history.train_acc, history.eval_steps, history.test_acc, history.diverged_at

Fast by construction: the data set lives on the device, each epoch's batches come from a
permutation drawn with a generator seeded by (seed, epoch), and the per-step loss and accuracy are
written into device tensors, so the host waits for the device only at evaluation points (every
``eval_every`` steps). There the loop also checks for divergence (a NaN or infinite training loss
stops the run; :attr:`History.diverged_at` is the first such step) and calls an optional probe,
e.g. :class:`bnutils.core.probes.ActivationProbe`, whose results are stacked over evaluation points.
On a GPU, ``amp`` (bf16 autocast), ``channels_last`` and ``compile`` (``torch.compile`` of the
training forward pass) are available. On the CPU the same seed gives bit-identical curves.

Long runs save a checkpoint every ``checkpoint_every`` steps and resume from it;
:func:`cached_train` stores whole results in :mod:`bnutils.infra.cache`, keyed by their parameters.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..infra import cache, validate
from .data import Data
from .losses import LOSSES, accuracy, loss_fn
from .probes import Step, StepProbe

Probe = Callable[[nn.Module], dict[str, Tensor]]


@dataclass
class History:
    """What :func:`train` recorded, on the CPU.

    ``train_loss``/``train_acc`` have one entry per step taken (the batch's loss and accuracy
    before that step's update; accuracy is NaN for regression). ``eval_steps`` are the steps
    after which the test set was evaluated (0 = at initialisation). ``probes[name]`` stacks the
    probe's results over the evaluation points. ``measures[name]`` stacks the results of the
    step probes, taken before the update of the steps ``measure_steps[name]``. ``diverged_at``
    is the first step whose training loss was NaN or infinite (the run stopped there), else None.
    ``seconds`` is the wall time of the training steps (evaluations and probes excluded),
    ``examples_per_s`` their throughput, ``probe_seconds`` the wall time of all probes and
    ``probe_times`` its split by kind of probe (class name; ``"gradient"``: the step's gradient
    that the step probes share).
    """

    train_loss: np.ndarray
    train_acc: np.ndarray
    eval_steps: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    probes: dict[str, np.ndarray] = field(default_factory=dict)
    measures: dict[str, np.ndarray] = field(default_factory=dict)
    measure_steps: dict[str, np.ndarray] = field(default_factory=dict)
    diverged_at: int | None = None
    steps: int = 0
    seconds: float = 0.0
    examples_per_s: float = float("nan")
    probe_seconds: float = 0.0
    probe_times: dict[str, float] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, *, loss: str = "cross_entropy", split: str = "test",
             batch_size: int = 1000, amp: bool = False) -> tuple[float, float]:
    """(loss, accuracy) of ``model`` in eval mode on a whole split; the model's mode is kept.

    The loss is averaged over examples for cross-entropy and summed for ``"sse"``.
    """
    validate.one_of("split", split, ("train", "test"))
    x_all, y_all = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0.0
    try:
        for i in range(0, len(x_all), batch_size):
            x, y = data.inputs(x_all[i:i + batch_size]), y_all[i:i + batch_size]
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x)
            n = len(y)
            batch_loss = loss_fn(loss, out, y)
            total_loss += batch_loss * (n if loss == "cross_entropy" else 1)
            correct += accuracy(out, y) * n
    finally:
        model.train(was_training)
    n_all = len(y_all)
    mean_loss = total_loss / n_all if loss == "cross_entropy" else total_loss
    return float(mean_loss), float(correct / n_all)


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> Tensor:
    """The order of the ``n`` training examples in ``epoch``: a permutation drawn on ``device`` by
    a generator seeded with (seed, epoch), so any step's batch can be recomputed (this is what
    makes resuming exact). Batch k of the epoch is ``perm[k * batch_size:(k + 1) * batch_size]``;
    the last incomplete batch is dropped."""
    g = torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g, device=device)


def _check(steps: int, lr: float, batch_size: int | None, eval_every: int, loss: str,
           data: Data) -> None:
    if not isinstance(data, Data):
        raise TypeError(f"data must be a bnutils.core.data.Data, got {type(data).__name__}")
    validate.one_of("loss", loss, LOSSES)
    validate.positive_int("steps", steps)
    validate.positive_int("eval_every", eval_every)
    if batch_size is not None and (not isinstance(batch_size, int) or
                                   not 1 <= batch_size <= len(data.x_train)):
        raise ValueError(f"batch_size must be None (full batch) or in 1..{len(data.x_train)}, "
                         f"got {batch_size!r}")
    validate.positive_number("lr", lr)


def train(model: nn.Module, data: Data, *, steps: int, lr: float, batch_size: int | None = 128,
          seed: int = 0, eval_every: int = 100, loss: str = "cross_entropy",
          probe: Probe | None = None, step_probes: Sequence[StepProbe] = (),
          device: torch.device | str | None = None,
          amp: bool = False, channels_last: bool = False, compile: bool = False,
          checkpoint: str | Path | None = None, checkpoint_every: int = 1000,
          progress: bool = True) -> History:
    """Train ``model`` in place with plain SGD (fixed ``lr``, no momentum or weight decay).

    ``batch_size=None`` is full-batch gradient descent (the DLN of [STIM18] App. A). ``seed``
    fixes the batch order and torch's global generator (used by noisy BN); the model's
    initialisation is the caller's. ``device`` defaults to the model's. ``probe(model)`` is called
    at each evaluation point, and each of ``step_probes`` at the steps it is due, before the
    update, with the step's batch (:class:`bnutils.core.probes.Step`); both must leave the model
    and the random generators as they found them (see :mod:`bnutils.core.probes`), so a probed
    run is bit-identical to an unprobed one.
    With ``checkpoint`` (a file path) the run saves its state every ``checkpoint_every`` steps
    and, if the file exists, resumes from it.
    """
    _check(steps, lr, batch_size, eval_every, loss, data)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    data = data.to(device)
    n = len(data.x_train)
    bs = n if batch_size is None else batch_size
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    forward = torch.compile(model) if compile else model
    torch.manual_seed(seed)

    train_loss = torch.full((steps,), float("nan"), device=device)
    train_acc = torch.full((steps,), float("nan"), device=device)
    evals: list[tuple[int, float, float]] = []
    probes: list[dict[str, Tensor]] = []
    measured: list[tuple[int, dict[str, Tensor]]] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        start = _resume(Path(checkpoint), model, opt, train_loss, train_acc, evals, probes,
                        measured)

    eval_seconds = 0.0
    probe_times: dict[str, float] = {}

    def timed(p: Any, *args: Any) -> dict[str, Tensor]:
        t = time.perf_counter()
        out = {k: v.detach().cpu() for k, v in p(*args).items()}
        name = type(p).__name__
        probe_times[name] = probe_times.get(name, 0.0) + time.perf_counter() - t
        return out

    def measure(step: int) -> None:
        nonlocal eval_seconds
        t = time.perf_counter()
        evals.append((step, *evaluate(model, data, loss=loss, amp=amp)))
        eval_seconds += time.perf_counter() - t
        if probe is not None:
            probes.append(timed(probe, model))

    t0 = time.perf_counter()
    if start == 0:
        measure(0)
    model.train()
    diverged_at, checked, saved, done = None, start, start, start
    bar = tqdm(total=steps, initial=start, disable=not progress, desc="train", leave=False)
    per_epoch, epoch, perm = n // bs, -1, None
    for t in range(start, steps):
        if batch_size is None:
            x, y = data.inputs(data.x_train), data.y_train
        else:
            if t // per_epoch != epoch:
                epoch = t // per_epoch
                perm = epoch_permutation(n, seed, epoch, device)
            idx = perm[(t % per_epoch) * bs:(t % per_epoch + 1) * bs]
            x, y = data.inputs(data.x_train[idx]), data.y_train[idx]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        due = [p for p in step_probes if t % p.every == 0]
        if due:
            context = Step(model, x, y, lr, loss, t)
            t1 = time.perf_counter()
            context.gradient()  # shared by the probes due at this step
            probe_times["gradient"] = probe_times.get("gradient", 0.0) + time.perf_counter() - t1
            for p in due:
                measured.append((t, timed(p, context)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = forward(x)
        batch_loss = loss_fn(loss, out, y)
        opt.zero_grad(set_to_none=True)
        batch_loss.backward()
        opt.step()
        train_loss[t] = batch_loss.detach()
        train_acc[t] = accuracy(out.detach(), y)
        bar.update()
        done = t + 1
        if done % eval_every and done < steps:
            continue
        finite = torch.isfinite(train_loss[checked:done])
        if not bool(finite.all()):  # the host waits for the device only here
            diverged_at = checked + int((~finite).nonzero()[0]) + 1
            break
        checked = done
        measure(done)
        bar.set_postfix(loss=f"{float(train_loss[t]):.3g}", test_acc=f"{evals[-1][2]:.3f}")
        if checkpoint is not None and done - saved >= checkpoint_every and done < steps:
            _save(Path(checkpoint), done, model, opt, train_loss, train_acc, evals, probes,
                  measured)
            saved = done
    bar.close()
    taken = diverged_at if diverged_at is not None else steps
    probe_seconds = sum(probe_times.values())
    seconds = time.perf_counter() - t0 - eval_seconds - probe_seconds
    eval_steps, test_loss, test_acc = (np.array(c) for c in zip(*evals))
    names = probes[0] if probes else {}
    series: dict[str, list] = {}
    for t, record in measured:
        if t < taken:
            for k, v in record.items():
                series.setdefault(k, []).append((t, v))
    return History(
        train_loss=train_loss[:taken].cpu().numpy(), train_acc=train_acc[:taken].cpu().numpy(),
        eval_steps=eval_steps.astype(int), test_loss=test_loss, test_acc=test_acc,
        probes={k: torch.stack([p[k] for p in probes]).numpy() for k in names},
        measures={k: torch.stack([v for _, v in s]).numpy() for k, s in series.items()},
        measure_steps={k: np.array([t for t, _ in s]) for k, s in series.items()},
        diverged_at=diverged_at, steps=taken, seconds=seconds, probe_seconds=probe_seconds,
        probe_times=probe_times,
        examples_per_s=(done - start) * bs / seconds if seconds > 0 else float("nan"))


def _save(path: Path, step: int, model: nn.Module, opt: torch.optim.Optimizer,
          train_loss: Tensor, train_acc: Tensor, evals: list, probes: list,
          measured: list) -> None:
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    cache.atomic_save({"step": step, "model": model.state_dict(), "opt": opt.state_dict(),
                       "train_loss": train_loss[:step].cpu(), "train_acc": train_acc[:step].cpu(),
                       "evals": evals, "probes": probes, "measured": measured, "rng": rng},
                      path)


def _resume(path: Path, model: nn.Module, opt: torch.optim.Optimizer, train_loss: Tensor,
            train_acc: Tensor, evals: list, probes: list, measured: list) -> int:
    state = cache.load(path)
    if state is None:  # unreadable checkpoint: start again
        return 0
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    step = state["step"]
    train_loss[:step] = state["train_loss"].to(train_loss.device)
    train_acc[:step] = state["train_acc"].to(train_acc.device)
    evals.extend(state["evals"])
    probes.extend(state["probes"])
    measured.extend(state.get("measured", []))
    torch.set_rng_state(state["rng"]["cpu"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return step


def cached_train(name: str, params: dict[str, Any], build: Callable[[], nn.Module], data: Data,
                 **train_kw: Any) -> History:
    """:func:`train` a freshly built model, cached under ``(name, params, train_kw, data)``.

    ``params`` must hold everything ``build`` and the probes depend on (e.g. the model's
    configuration and the probes' settings); the code of the probes' modules is part of the key.
    ``build`` is called after seeding torch with ``train_kw["seed"]``. A partial run checkpoints
    next to the cache entry and resumes when interrupted.
    """
    key_params, code = _cache_entry(params, data, train_kw)
    ckpt = cache.cache_dir() / f"{cache.cache_key(name, key_params, code)}.ckpt"

    def compute() -> History:
        torch.manual_seed(train_kw.get("seed", 0))
        history = train(build(), data, checkpoint=ckpt, **train_kw)
        ckpt.unlink(missing_ok=True)
        return history

    return cache.cached(name, key_params, compute, code=code)


def _cache_entry(params: dict[str, Any], data: Data, train_kw: dict[str, Any]
                 ) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The parameters and code modules that key a cached training run."""
    key_params = {**params, "data": (data.name, tuple(data.x_train.shape)),
                  **{k: v for k, v in train_kw.items()
                     if k not in ("probe", "step_probes", "progress")}}
    probes = [train_kw.get("probe"), *train_kw.get("step_probes", ())]
    code = (__name__, "bnutils.core.models") + tuple(
        type(p).__module__ for p in probes if type(p).__module__.startswith("bnutils."))
    return key_params, code


def cached_history(name: str, params: dict[str, Any], data: Data, **train_kw: Any
                   ) -> History | None:
    """The result :func:`cached_train` would return for these arguments if it is in the cache
    already, else None (nothing is trained)."""
    key_params, code = _cache_entry(params, data, train_kw)
    return cache.lookup(name, key_params, code=code)


def steps_to(history: History, threshold: float) -> int | None:
    """The first evaluation step at which the test accuracy reaches ``threshold`` ("steps to
    accuracy", as read off [IS15] Fig. 1(a)); None when it never does."""
    reached = np.nonzero(history.test_acc >= threshold)[0]
    return int(history.eval_steps[reached[0]]) if len(reached) else None


def final_accuracy(history: History, window: int, split: str = "train") -> float:
    """Where a run ended ([STIM18] Fig. 1): the mean per-step training accuracy over the last
    ``window`` steps (``split="train"``), or the mean test accuracy of the evaluations within them
    (``"test"``); NaN for a run that diverged."""
    validate.one_of("split", split, ("train", "test"))
    if history.diverged:
        return float("nan")
    if split == "train":
        return float(np.mean(history.train_acc[-window:]))
    return float(np.mean(history.test_acc[history.eval_steps >= history.steps - window]))
