"""The training runs that Chapters 2 and 3 share, each carrying every probe either needs.

[STIM18] study two networks (App. A): a VGG on CIFAR-10 trained with SGD, and a 25-layer deep
linear network (DLN) trained with full-batch gradient descent. Both chapters look at the same runs
from different angles (activation distributions and internal covariate shift in Chapter 2, the
landscape along the gradient and the Hessian in Chapter 3), so every run carries all probes:

- activation samples at evaluation points (:class:`bnutils.core.probes.ActivationProbe`);
- the per-step change of each unit's mean and variance (:class:`bnutils.measure.shift.MomentProbe`);
- internal covariate shift by [STIM18] Def. 2.1 (:class:`bnutils.measure.ics.ICSProbe`);
- the landscape along the gradient (:class:`bnutils.measure.landscape.LandscapeProbe`);
- the top eigenvalue of the Hessian (:class:`bnutils.measure.landscape.HessianProbe`).

A run is described completely by a :class:`VGGRun` or :class:`DLNRun`; its result is cached under
that description and the code it depends on, so a configuration trains once whichever chapter
asks first. :func:`train_all` trains the missing runs of a list side by side, one process per CPU
core (one thread each), or one after the other on a GPU.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm import tqdm

from ..core.data import Data, class_balanced_subset, dln_data, load_cifar10
from ..core.models import DLN, NORMS, VGG
from ..core.probes import ActivationProbe
from ..core.train import History, cached_history, cached_train
from ..infra import validate
from .ics import ICSProbe
from .landscape import HessianProbe, LandscapeProbe, factor_grid
from .shift import MomentProbe

#: The VGG protocol of each profile, shared by Chapters 2 and 3 (their PROFILES include it).
#: ``probe_every``: moments and ICS; ``landscape_every`` and ``hessian_every``: their probes.
#: ``long`` is the paper's data and batch (all of CIFAR-10, batch 128) at 1/8 of the width and a
#: fifth of its 15,000 steps. A BN network of that width trains at about 0.13 s per step on one
#: CPU core, and two runs side by side take about twice as long each (the BN layers are limited by
#: memory bandwidth, which the cores share), so the 13 VGG runs of Chapters 2 and 3 would need
#: about six hours at 15,000 steps; 3,000 steps (7.7 epochs) fit the profile's budget of about two
#: hours per chapter.
VGG_PROTOCOL = {
    "quick": dict(width=0.125, n_train_per_class=500, n_test_per_class=100, steps=250,
                  batch_size=128, eval_every=25, probe_every=25, landscape_every=50,
                  hessian_every=100),
    "long": dict(width=0.125, n_train_per_class=5000, n_test_per_class=1000, steps=3000,
                 batch_size=128, eval_every=250, probe_every=250, landscape_every=250,
                 hessian_every=1000),
    "full": dict(width=1.0, n_train_per_class=5000, n_test_per_class=1000, steps=15_000,
                 batch_size=128, eval_every=500, probe_every=100, landscape_every=100,
                 hessian_every=1500),
}
#: The deep linear network of [STIM18] App. A: 25 layers, 1,000 samples, 10,000 steps of
#: full-batch gradient descent (fewer in the quick profile, which must fit CI's time budget).
DLN_PROTOCOL = {
    "quick": dict(dln_steps=1000, dln_seeds=3, dln_probe_every=100, dln_hessian_every=500),
    "long": dict(dln_steps=10_000, dln_seeds=3, dln_probe_every=250, dln_hessian_every=2500),
    "full": dict(dln_steps=10_000, dln_seeds=3, dln_probe_every=250, dln_hessian_every=2500),
}
#: Which layers each probe looks at, by VGG configuration (layers numbered from 1, convs first):
#: [STIM18] Fig. 1 shows conv layers #3 and #11, Fig. 2 #2, #9 and #13, Fig. 3 #5 and #10. VGG-A
#: (the public replication's network, 8 convs) gets the layers right after and well after its
#: one BN layer (after conv 4).
VGG_LAYERS = {
    "D": dict(activations=(2, 3, 9, 11, 13), moments=(2, 9, 13), ics=(5, 10)),
    "A": dict(activations=(3, 4, 5, 8), moments=(4, 5, 8), ics=(5, 7)),
}
DLN_LAYERS = dict(activations=(9, 17), ics=(9, 17))
#: Step sizes along the gradient, as multiples of the learning rate ([STIM18] App. A.2.2).
VGG_FACTORS = factor_grid(0.5, 4, 6)
DLN_FACTORS = factor_grid(0.01, 30, 8)
PROBE_BATCH, PROBE_UNITS, PROBE_VALUES = 256, 16, 256
HESSIAN_ITERATIONS = 20


@dataclass(frozen=True)
class VGGRun:
    """One VGG run on CIFAR-10 ([STIM18] App. A): plain SGD, Glorot initialisation, no data
    augmentation. ``norm`` is "none", "bn", "noisy_bn", "l1", "l2" or "linf"; ``norm_layers``
    restricts it to some layers (e.g. (4,): one BN after the 4th conv)."""

    norm: str
    lr: float
    seed: int
    width: float
    n_train_per_class: int
    n_test_per_class: int
    steps: int
    batch_size: int
    eval_every: int
    probe_every: int
    landscape_every: int
    hessian_every: int
    config: str = "D"
    norm_layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_run(self)
        validate.one_of("VGG config", self.config, VGG_LAYERS)
        validate.positive_number("width", self.width)

    @property
    def layers(self) -> dict[str, tuple[int, ...]]:
        return VGG_LAYERS[self.config]

    @classmethod
    def of(cls, knobs: Mapping[str, Any], norm: str, lr: float, seed: int, config: str = "D",
           norm_layers: tuple[int, ...] | None = None) -> "VGGRun":
        """The run of ``norm`` at ``lr`` with the VGG protocol found in a chapter's ``knobs``."""
        return cls(norm=norm, lr=lr, seed=seed, config=config, norm_layers=norm_layers,
                   **{k: knobs[k] for k in VGG_PROTOCOL["quick"]})


@dataclass(frozen=True)
class DLNRun:
    """One run of the deep linear network of [STIM18] App. A: 25 square 10x10 layers, Glorot
    initialisation, loss ||W_25 ... W_1 x - A x||^2 summed over 1,000 Gaussian samples, full-batch
    gradient descent. With a normalization, it follows each of the 24 hidden layers (none after
    the output layer, as the VGG's classifier output has none)."""

    norm: str
    lr: float
    seed: int
    dln_steps: int
    dln_probe_every: int
    dln_hessian_every: int

    def __post_init__(self) -> None:
        _check_run(self)

    @classmethod
    def of(cls, knobs: Mapping[str, Any], norm: str, lr: float, seed: int) -> "DLNRun":
        """The run of ``norm`` at ``lr`` with the DLN protocol found in a chapter's ``knobs``."""
        return cls(norm=norm, lr=lr, seed=seed,
                   **{k: knobs[k] for k in DLN_PROTOCOL["quick"] if k != "dln_seeds"})


def _check_run(run: VGGRun | DLNRun) -> None:
    """Refuse a run that could not train, before any work (a worker would fail much later)."""
    validate.one_of("norm", run.norm, NORMS)
    validate.positive_number("lr", run.lr)
    validate.nonnegative_int("seed", run.seed)
    for name, value in asdict(run).items():
        if name.endswith(("steps", "_every", "_size", "_per_class")):
            validate.positive_int(name, value)


def vgg_data(run: VGGRun) -> Data:
    """The class-balanced CIFAR-10 subset of a run (all of it at 5,000 / 1,000 per class)."""
    return class_balanced_subset(load_cifar10(), run.n_train_per_class, run.n_test_per_class,
                                 seed=run.seed)


def _training(run: VGGRun | DLNRun, device: torch.device | str, progress: bool
              ) -> tuple[str, dict, Callable[[], torch.nn.Module], Data, dict]:
    """What :func:`bnutils.core.train.cached_train` needs for a run: name, key parameters, model
    builder, data and training arguments (with every probe)."""
    if isinstance(run, VGGRun):
        data = vgg_data(run)
        pick = torch.randperm(len(data.x_train),
                              generator=torch.Generator().manual_seed(run.seed))
        x = data.inputs(data.x_train[pick[:PROBE_BATCH]]).to(device)
        layers, factors, every = run.layers, VGG_FACTORS, run.probe_every
        step_probes = [MomentProbe(x, layers=layers["moments"], every=every)]
        landscape_every, hessian_every = run.landscape_every, run.hessian_every
        units = PROBE_UNITS
        kw = dict(steps=run.steps, batch_size=run.batch_size, eval_every=run.eval_every)
        build = lambda: VGG(run.config, width=run.width, norm=run.norm,  # noqa: E731
                            norm_layers=run.norm_layers)
    else:
        data = dln_data(1000, 10, n_test=1000, seed=run.seed)
        x = data.x_train[:PROBE_BATCH].to(device)
        layers, factors, every = DLN_LAYERS, DLN_FACTORS, run.dln_probe_every
        step_probes = []
        landscape_every, hessian_every = every, run.dln_hessian_every
        units = 10
        kw = dict(steps=run.dln_steps, batch_size=None, eval_every=every, loss="sse")
        hidden = None if run.norm == "none" else tuple(range(1, 25))
        build = lambda: DLN(25, 10, norm=run.norm, norm_layers=hidden)  # noqa: E731
    step_probes += [ICSProbe(layers=layers["ics"], every=every),
                    LandscapeProbe(factors=factors, every=landscape_every),
                    HessianProbe(iterations=HESSIAN_ITERATIONS, every=hessian_every)]
    probe = ActivationProbe(x, layers=layers["activations"], units=units, values=PROBE_VALUES,
                            train_mode=True, seed=run.seed)
    params = {**asdict(run), "layers": layers, "factors": factors,
              "probe": (PROBE_BATCH, units, PROBE_VALUES),
              "hessian_iterations": HESSIAN_ITERATIONS}
    name = "vgg-run" if isinstance(run, VGGRun) else "dln-run"
    return name, params, build, data, dict(kw, lr=run.lr, seed=run.seed, probe=probe,
                                           step_probes=step_probes, device=device,
                                           progress=progress)


def train_run(run: VGGRun | DLNRun, device: torch.device | str = "cpu",
              progress: bool = True) -> History:
    """Train one run with all its probes, or load it from the cache."""
    name, params, build, data, kw = _training(run, device, progress)
    return cached_train(name, params, build, data, **kw)


def cached_run(run: VGGRun | DLNRun, device: torch.device | str = "cpu") -> History | None:
    """The run's result if it is in the cache, else None (nothing is trained)."""
    name, params, _, data, kw = _training(run, device, False)
    return cached_history(name, params, data, **kw)


def _train_one(run: VGGRun | DLNRun, device: str) -> History:
    """Worker: one run on one thread (a worker process shares the CPU with the others)."""
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    return train_run(run, device, progress=False)


def default_workers(device: torch.device | str) -> int:
    """Runs trained side by side: one per CPU core on the CPU, one at a time on a GPU."""
    return 1 if torch.device(device).type == "cuda" else max(1, os.cpu_count() or 1)


def train_all(runs: Sequence[VGGRun | DLNRun], device: torch.device | str = "cpu",
              workers: int | None = None) -> list[History]:
    """Every run's result: from the cache where it is there, else trained, ``workers`` runs at a
    time in separate processes (default: one per CPU core; one at a time in this process on a
    GPU). The results are the same as one after the other: each run is seeded on its own. (From
    a script, train in parallel under ``if __name__ == "__main__":``, as multiprocessing needs.)"""
    device = str(device)
    workers = default_workers(device) if workers is None else validate.positive_int(
        "workers", workers)
    found = [cached_run(run, device) for run in runs]
    missing = [i for i, h in enumerate(found) if h is None]
    if workers == 1 or len(missing) <= 1:
        for i in tqdm(missing, desc="runs", leave=False):
            found[i] = _train_one(runs[i], device)
        return found
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(missing)), mp_context=context) as pool:
        futures = {i: pool.submit(_train_one, runs[i], device) for i in missing}
        for i in tqdm(missing, desc="runs", leave=False):
            found[i] = futures[i].result()
    return found


def probe_costs(histories: Sequence[History]) -> dict[str, float]:
    """The wall time of each kind of probe over that of the training steps it observes, summed
    over runs (a run served by the cache reports the times of the run that computed it)."""
    train = sum(h.seconds for h in histories)
    kinds = sorted({k for h in histories for k in h.probe_times})
    return {k: sum(h.probe_times.get(k, 0.0) for h in histories) / train for k in kinds}


def cost_record(histories: Sequence[History]) -> dict[str, str]:
    """Rows for a chapter's run record: the time its runs took to train (summed over runs, which
    train side by side, one per core), and what the probes cost, in all and by kind, as a
    fraction of the wall time of the training steps they observe."""
    kinds = probe_costs(histories)
    hours = sum(h.seconds + h.probe_seconds for h in histories) / 3600
    return {"training + probes of the runs (summed)": f"{hours:.2f} h over {len(histories)} runs",
            "probes / training (wall time)": f"{sum(kinds.values()):.2f} ("
            + ", ".join(f"{k} {v:.2f}" for k, v in kinds.items()) + ")"}
