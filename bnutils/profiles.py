"""Run profiles: one place that says what ``quick`` and ``full`` mean for every chapter.

Every chapter notebook has a cell tagged ``parameters`` with at least ``profile``, ``seed`` and
``device`` plus the chapter's own knobs, each defaulting to ``None`` ("take the profile's value").
The notebook's first call is :func:`configure`, which validates everything *before* any work starts
and returns a :class:`Config` with every knob resolved::

    cfg = configure("01", profile=profile, seed=seed, device=device, steps=steps, lr=lr)
    cfg.steps, cfg.lr, cfg.device, cfg.profile

Profiles
--------
``quick``  a CPU, minutes; what CI runs and what the regression baselines hold.
``full``   the papers' settings; meant for a GPU.
``auto``   ``full`` when CUDA is available, ``quick`` otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

PROFILES = ("quick", "full", "auto")

# --------------------------------------------------------------------------------------------
# Validation rules, by knob name. A rule returns an error message or None.
# --------------------------------------------------------------------------------------------


def _positive(kind: type) -> Callable[[str, Any], str | None]:
    def check(name: str, value: Any) -> str | None:
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{name} must be a positive integer, got {value!r}"
        if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"{name} must be a positive number, got {value!r}"
        if not (value > 0 and math.isfinite(value)):
            return f"{name} must be positive, got {value!r}"
        return None

    return check


def _nonnegative_int(name: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"{name} must be a non-negative integer, got {value!r}"
    return None


def _positive_list(kind: type) -> Callable[[str, Any], str | None]:
    check_one = _positive(kind)

    def check(name: str, value: Any) -> str | None:
        if not isinstance(value, (list, tuple)) or not value:
            return f"{name} must be a non-empty list, got {value!r}"
        for v in value:
            msg = check_one(f"every entry of {name}", v)
            if msg:
                return msg
        return None

    return check


def _condition_number(name: str, value: Any) -> str | None:
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float))
                         or not 1 <= v < math.inf for v in values):
        return f"{name} must be a condition number >= 1 (or a non-empty list of them), got {value!r}"
    return None


RULES: dict[str, Callable[[str, Any], str | None]] = {
    "seed": _nonnegative_int,
    "kappa": _condition_number,
    "kappas": _condition_number,
}
"""Knob name -> rule. Knobs named like ``lr``, ``steps``, ``*_size``, ``n_*`` get a default rule
from :func:`_rule_for`; list the others here."""


def _rule_for(name: str, value: Any) -> Callable[[str, Any], str | None] | None:
    if name in RULES:
        return RULES[name]
    if name in ("lr", "eps") or name.startswith("lr_") or name.endswith("_lr"):
        return _positive_list(float) if isinstance(value, (list, tuple)) else _positive(float)
    if name in ("steps", "epochs") or name.endswith(("_size", "_steps", "_every", "_seeds")) \
            or name.startswith("n_"):
        return _positive_list(int) if isinstance(value, (list, tuple)) else _positive(int)
    return None


@dataclass(frozen=True)
class ChapterProfiles:
    """The knobs of one chapter: their values under ``quick`` and ``full``, and allowed choices."""

    title: str
    quick: dict[str, Any]
    full: dict[str, Any]
    choices: dict[str, tuple] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.quick) != set(self.full):
            raise ValueError(f"{self.title}: quick and full profiles name different knobs")


# --------------------------------------------------------------------------------------------
# The chapters' profiles. Each chapter owns its entry.
# --------------------------------------------------------------------------------------------

CHAPTERS: dict[str, ChapterProfiles] = {
    "01": ChapterProfiles(
        title="The batch normalization transform",
        quick=dict(dataset="digits", steps=2000, batch_size=60, lr=0.5, eval_every=50),
        full=dict(dataset="auto", steps=50_000, batch_size=60, lr=0.5, eval_every=500),
        choices=dict(dataset=("auto", "mnist", "digits")),
    ),
    "02": ChapterProfiles(
        title="Internal covariate shift",
        quick=dict(width=0.125, n_train_per_class=500, n_test_per_class=100, steps=250,
                   batch_size=128, lr=0.1, lr_large=0.5, eval_every=25, window_steps=50),
        full=dict(width=1.0, n_train_per_class=5000, n_test_per_class=1000, steps=15_000,
                  batch_size=128, lr=0.1, lr_large=0.5, eval_every=500, window_steps=1000),
        choices=dict(width=(0.125, 0.25, 0.5, 1.0)),
    ),
    "04": ChapterProfiles(
        title="Length-direction decoupling",
        quick=dict(n_dim=20, kappas=[10, 30, 100, 300], n_seeds=3, n_samples=512, kappa=30.0),
        full=dict(n_dim=100, kappas=[10, 30, 100, 300, 1000, 3000], n_seeds=10, n_samples=4096,
                  kappa=30.0),
    ),
    "05": ChapterProfiles(
        title="Convergence of GDNP",
        quick=dict(n_dim=10, kappa=10.0, n_seeds=3, steps=300,
                   bisect_steps=[5, 10, 15, 20, 30, 40],
                   lr=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0], n_samples=2000,
                   n_units=3, n_mlp_samples=500, n_mlp_evals=2700, mlp_bisect_steps=15,
                   critical_steps=3000, n_pca=20),
        full=dict(n_dim=50, kappa=30.0, n_seeds=10, steps=1500,
                  bisect_steps=[5, 10, 15, 20, 30, 40],
                  lr=[0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0],
                  n_samples=50_000, n_units=5, n_mlp_samples=10_000, n_mlp_evals=90_000,
                  mlp_bisect_steps=15, critical_steps=15_000, n_pca=20),
    ),
}


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """A chapter's resolved, validated settings. Knobs are attributes: ``cfg.lr``."""

    chapter: str
    profile: str
    requested_profile: str
    seed: int
    device: torch.device
    knobs: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        knobs = object.__getattribute__(self, "knobs")
        if name in knobs:
            return knobs[name]
        raise AttributeError(name)

    def as_dict(self) -> dict[str, Any]:
        """Everything that determines the chapter's results, for cache keys and run records."""
        return dict(chapter=self.chapter, profile=self.profile, seed=self.seed,
                    device=str(self.device), **self.knobs)


def resolve_profile(profile: str) -> str:
    """``auto`` -> ``full`` on a CUDA machine, else ``quick``; unknown names raise ValueError."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    if profile == "auto":
        return "full" if torch.cuda.is_available() else "quick"
    return profile


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; "
                         "use device='cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N")
    return dev


def configure(chapter: str, *, profile: str = "auto", seed: int = 0,
              device: str | torch.device = "auto", **overrides: Any) -> Config:
    """Validate a chapter's parameters and resolve every knob (``None`` takes the profile's value).

    Raises ``ValueError`` naming the allowed values for an unknown chapter, profile, device, knob
    or choice, and for an out-of-range number (a negative learning rate, zero steps).
    """
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; allowed: {', '.join(CHAPTERS)}")
    spec = CHAPTERS[chapter]
    resolved_profile = resolve_profile(profile)
    unknown = sorted(set(overrides) - set(spec.quick))
    if unknown:
        raise ValueError(f"chapter {chapter} has no parameter(s) {', '.join(unknown)}; "
                         f"allowed: profile, seed, device, {', '.join(spec.quick)}")
    errors = []
    msg = _nonnegative_int("seed", seed)
    if msg:
        errors.append(msg)
    knobs = dict(getattr(spec, resolved_profile))
    knobs.update({k: v for k, v in overrides.items() if v is not None})
    for name, value in knobs.items():
        if name in spec.choices:
            if value not in spec.choices[name]:
                errors.append(f"unknown {name} {value!r}; allowed: "
                              f"{', '.join(map(str, spec.choices[name]))}")
            continue
        rule = _rule_for(name, value)
        msg = rule(name, value) if rule else None
        if msg:
            errors.append(msg)
    if errors:
        raise ValueError(f"chapter {chapter}: " + "; ".join(errors))
    return Config(chapter=chapter, profile=resolved_profile, requested_profile=profile,
                  seed=seed, device=resolve_device(device), knobs=knobs)
