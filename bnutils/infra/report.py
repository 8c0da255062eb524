"""What every chapter reports: its setup, glued numbers, claims table and run record.

A chapter notebook starts with ``cfg = chapter.setup(globals())`` (:func:`setup`: validate the
parameters, seed, start the clock, apply the figure style) and ends with the claims table
(:func:`claims_table`) and ``run_record(cfg)``. Numbers quoted in the prose are glued in one call,
``glue_all("ch02", numbers)``. A claim's threshold is written once, as a :class:`Below` or a
comparison from :mod:`bnutils.measure.stats`, which renders it in the text and applies it in the
verdict. The claims table and :func:`key_numbers` render as Markdown in the book and as the same
plain text in the notebook, so the regression tests (nbval) compare their content.
"""
from __future__ import annotations

import datetime as _dt
import platform
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .config import ChapterProfiles, Config

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


class MarkdownTable:
    """A table that shows as Markdown in the book and as identical plain text in the notebook."""

    def __init__(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.header = list(header)
        self.rows = [[str(c) for c in r] for r in rows]

    def _repr_markdown_(self) -> str:
        esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines = ["| " + " | ".join(map(esc, self.header)) + " |",
                 "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(map(esc, r)) + " |" for r in self.rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self._repr_markdown_()


def fmt(x: float, digits: int = 3) -> str:
    """A number rounded to ``digits`` significant figures, for tables that must be stable."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return str(x)
    return f"{float(x):.{digits}g}"


def verdict(ok: bool | None) -> str:
    """The verdict of a claim from a measured comparison; None means the run cannot decide."""
    if ok is None:
        return INCONCLUSIVE
    return REPRODUCED if bool(ok) else NOT_REPRODUCED


@dataclass(frozen=True)
class Below:
    """A threshold written once: a measured quantity (a rounding error, say) must stay below
    ``bound``. ``str(t)`` renders it for the prose ("< 1e-10"), ``t(x)`` applies it, and
    ``t.show(x)`` reports a measurement against it."""

    bound: float

    @property
    def value(self) -> str:
        """The bound as written in the prose: 1e-10, 1e-9, 0.02."""
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{self.bound:.0e}").replace("e+", "e") \
            if self.bound < 1e-3 else f"{self.bound:g}"

    def __str__(self) -> str:
        return f"< {self.value}"

    def __call__(self, x: float) -> bool:
        return bool(abs(x) < self.bound)

    def show(self, x: float) -> str:
        """The bound when ``x`` meets it, else ``x`` itself."""
        return str(self) if self(x) else fmt(x, 2)


@dataclass(frozen=True)
class Claim:
    """One row of a chapter's claims table. ``verdict`` must come from :func:`verdict`;
    ``seeds`` is the number of seeds (random problems, runs) behind it, "-" for an exact check
    that no seed changes."""

    claim: str
    source: str
    paper: str
    measured: str
    verdict: str
    seeds: int | str = "-"


CLAIMS_HEADER = ("Claim", "Source", "Paper reports", "This run measured", "Seeds", "Verdict")


def claims_table(claims: Sequence[Claim]) -> MarkdownTable:
    """The table every chapter ends with: claim, source, paper, this run, seeds, verdict."""
    return MarkdownTable(CLAIMS_HEADER, [[c.claim, c.source, c.paper, c.measured, c.seeds,
                                          c.verdict] for c in claims])


def key_numbers(numbers: dict[str, Any], digits: int = 3) -> MarkdownTable:
    """A two-column table of a chapter's key numbers, rounded so that reruns compare equal."""
    return MarkdownTable(["Quantity", "Value"],
                         [[k, fmt(v, digits) if isinstance(v, (float, np.floating)) else v]
                          for k, v in numbers.items()])


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a result depends on."""
    import matplotlib

    from .. import __version__
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "matplotlib": matplotlib.__version__,
            "bnutils": __version__}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def setup(profiles: ChapterProfiles, namespace: Mapping[str, Any]) -> Config:
    """Configure a chapter from its notebook's parameters (:meth:`ChapterProfiles.configure_from`),
    seed torch and numpy from ``cfg.seed``, apply the figure style, and start the clock.

    The quick profile on a CPU runs on one thread: the small models of that profile train several
    times faster than on two or more contending threads, and a fixed thread count keeps reductions
    in the same order on every machine, so the regression baselines compare equal.
    """
    from .plotting import use_style

    cfg = profiles.configure_from(namespace)
    if cfg.profile == "quick" and cfg.device.type == "cpu":
        torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    use_style()
    return cfg


def run_record(cfg: Config, **extra: Any) -> MarkdownTable:
    """The record of this execution: profile, device, seed, knobs, versions, date, wall time,
    and any ``extra`` rows (e.g. the cost of a chapter's probes)."""
    profile = cfg.profile if cfg.requested_profile == cfg.profile \
        else f"{cfg.profile} (from {cfg.requested_profile})"
    started = _dt.datetime.fromtimestamp(cfg.started, _dt.timezone.utc)
    record = {"profile": profile, "device": device_name(cfg.device), "seed": cfg.seed,
              **cfg.knobs, **library_versions(),
              "date": started.strftime("%Y-%m-%d %H:%M UTC"),
              "wall time": f"{time.time() - cfg.started:.0f} s", **extra}
    return MarkdownTable(["Run", "Value"], list(record.items()))


def glue_all(prefix: str, values: Mapping[str, Any]) -> None:
    """Glue every value as ``{prefix}_{name}`` for ``{glue:text}`` references in the prose (run
    it in a cell of its own: its outputs hold the values at full precision)."""
    from myst_nb import glue

    for name, value in values.items():
        glue(f"{prefix}_{name}", value, display=False)


def glue_figure(name: str, fig: Any) -> None:
    """Glue a finished figure for a ``{glue:figure}`` directive (shown only there)."""
    from myst_nb import glue

    glue(name, fig, display=False)
