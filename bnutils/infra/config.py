"""Run profiles and chapter configuration: what ``quick`` and ``full`` mean, validated up front.

Each chapter module defines its knobs once, as a :class:`ChapterProfiles`::

    PROFILES = ChapterProfiles("02", "Internal covariate shift",
                               quick=dict(steps=250, lr=0.1), full=dict(steps=15_000, lr=0.1))

and its notebook has a cell tagged ``parameters`` that lists ``profile``, ``seed``, ``device`` and
the same knobs, each defaulting to ``None`` ("take the profile's value"). The notebook's first
call, ``cfg = chapter.setup(globals())`` (:func:`bnutils.infra.report.setup`), reads those names,
validates everything *before* any work starts and returns a :class:`Config` with every knob
resolved: ``cfg.steps``, ``cfg.lr``, ``cfg.device``, ``cfg.profile``.

Profiles
--------
``quick``  a CPU, minutes; what CI runs and what the regression baselines hold.
``long``   the papers' protocol as far as a 2-core CPU allows in about two hours per chapter
           (what the published book shows; see the README's profile table).
``full``   the papers' settings; meant for a GPU.
``auto``   ``full`` when CUDA is available, ``quick`` otherwise.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from . import validate as v

PROFILES = ("quick", "long", "full", "auto")
Rule = Callable[[str, Any], Any]


def rule_for(name: str, value: Any) -> Rule | None:
    """The default check of a knob, from its name: learning rates and ``eps`` are positive numbers,
    step counts, sizes (``*_size``), intervals (``*_every``) and counts (``n_*``) positive integers,
    each also as a non-empty list of them; ``kappa*`` condition numbers >= 1."""
    listed = isinstance(value, (list, tuple))

    def each(check: Rule) -> Rule:
        return (lambda n, x: v.nonempty_list(n, x, check)) if listed else check

    if name.startswith("kappa"):
        return each(lambda n, x: v.at_least(n, x, 1, "a condition number"))
    if name in ("lr", "eps") or name.startswith("lr_") or name.endswith("_lr"):
        return each(v.positive_number)
    if name in ("steps", "epochs") or name.endswith(("_size", "_steps", "_every", "_seeds")) \
            or name.startswith("n_"):
        return each(v.positive_int)
    return None


@dataclass(frozen=True)
class ChapterProfiles:
    """The knobs of one chapter: their values under each profile, allowed choices, extra rules."""

    chapter: str
    title: str
    quick: dict[str, Any]
    full: dict[str, Any]
    long: dict[str, Any] | None = None
    choices: dict[str, tuple] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.long is None:  # a chapter whose full profile fits a CPU runs it as "long" too
            object.__setattr__(self, "long", dict(self.full))
        if not set(self.quick) == set(self.full) == set(self.long):
            raise ValueError(f"{self.title}: the profiles name different knobs")

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(self.quick)

    def values(self, profile: str) -> dict[str, Any]:
        return dict(getattr(self, resolve_profile(profile)))

    def configure(self, *, profile: str = "auto", seed: int = 0,
                  device: str | torch.device = "auto", **overrides: Any) -> "Config":
        """Validate the chapter's parameters and resolve every knob (``None`` takes the profile's
        value). Raises ``ValueError`` naming the allowed values for an unknown profile, device,
        knob or choice, and for an out-of-range number (a negative learning rate, zero steps);
        all problems are reported at once."""
        resolved = resolve_profile(profile)
        unknown = sorted(set(overrides) - set(self.knobs))
        if unknown:
            raise ValueError(f"chapter {self.chapter} has no parameter(s) {', '.join(unknown)}; "
                             f"allowed: profile, seed, device, {', '.join(self.knobs)}")
        knobs = self.values(resolved)
        knobs.update({k: x for k, x in overrides.items() if x is not None})
        errors = []
        checks: list[tuple[Rule, str, Any]] = [(v.nonnegative_int, "seed", seed)]
        for name, value in knobs.items():
            if name in self.choices:
                checks.append((lambda n, x, c=self.choices[name]: v.one_of(n, x, c), name, value))
            elif (rule := self.rules.get(name) or rule_for(name, value)) is not None:
                checks.append((rule, name, value))
        for rule, name, value in checks:
            try:
                rule(name, value)
            except ValueError as e:
                errors.append(str(e))
        if errors:
            raise ValueError(f"chapter {self.chapter}: " + "; ".join(errors))
        return Config(chapter=self.chapter, title=self.title, profile=resolved,
                      requested_profile=profile, seed=seed, device=resolve_device(device),
                      knobs=knobs)

    def configure_from(self, namespace: Mapping[str, Any]) -> "Config":
        """:meth:`configure` from the variables of a notebook's parameters cell."""
        return self.configure(profile=namespace.get("profile", "auto"),
                              seed=namespace.get("seed", 0),
                              device=namespace.get("device", "auto"),
                              **{k: namespace[k] for k in self.knobs if k in namespace})


@dataclass(frozen=True)
class Config:
    """A chapter's resolved, validated settings. Knobs are attributes: ``cfg.lr``."""

    chapter: str
    title: str
    profile: str
    requested_profile: str
    seed: int
    device: torch.device
    knobs: dict[str, Any]
    started: float = field(default_factory=time.time, compare=False)

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
    v.one_of("profile", profile, PROFILES)
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
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; "
                         "use device='cpu' or 'auto'")
    return dev
