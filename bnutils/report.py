"""What every chapter reports: the record of its run and its claims table.

A chapter starts with ``run = start_run(cfg)`` and ends with ``claims_table([...])`` and
``run.finish()``. The claims table and :func:`key_numbers` render as Markdown in the book and as
the same plain text in the notebook, so the regression tests (nbval) compare their content.
"""
from __future__ import annotations

import datetime as _dt
import platform
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .profiles import Config

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
class Claim:
    """One row of a chapter's claims table. ``verdict`` must come from :func:`verdict`."""

    claim: str
    source: str
    paper: str
    measured: str
    verdict: str


def claims_table(claims: Sequence[Claim]) -> MarkdownTable:
    """The table every chapter ends with: claim, source, paper, this run, verdict."""
    return MarkdownTable(["Claim", "Source", "Paper reports", "This run measured", "Verdict"],
                         [[c.claim, c.source, c.paper, c.measured, c.verdict] for c in claims])


def key_numbers(numbers: dict[str, Any], digits: int = 3) -> MarkdownTable:
    """A two-column table of a chapter's key numbers, rounded so that reruns compare equal."""
    return MarkdownTable(["Quantity", "Value"],
                         [[k, fmt(v, digits) if isinstance(v, (float, np.floating)) else v]
                          for k, v in numbers.items()])


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a result depends on."""
    import matplotlib

    from . import __version__
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "matplotlib": matplotlib.__version__,
            "bnutils": __version__}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class Run:
    """The record of one execution of a chapter: profile, device, versions, date, wall time."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self._t0 = time.perf_counter()

    def record(self) -> dict[str, Any]:
        cfg = self.cfg
        profile = cfg.profile if cfg.requested_profile == cfg.profile \
            else f"{cfg.profile} (from {cfg.requested_profile})"
        return {"profile": profile, "device": device_name(cfg.device), "seed": cfg.seed,
                **{k: v for k, v in cfg.knobs.items()},
                **library_versions(),
                "date": self.started.strftime("%Y-%m-%d %H:%M UTC"),
                "wall time": f"{time.perf_counter() - self._t0:.0f} s"}

    def finish(self) -> MarkdownTable:
        """The run record as a table; shown at the end of every chapter."""
        return MarkdownTable(["Run", "Value"], list(self.record().items()))


def start_run(cfg: Config) -> Run:
    """Start the clock on a chapter; seed torch and numpy from ``cfg.seed``.

    The quick profile on a CPU runs on one thread: the small models of that profile train several
    times faster than on two or more contending threads, and a fixed thread count keeps reductions
    in the same order on every machine, so the regression baselines compare equal.
    """
    if cfg.profile == "quick" and cfg.device.type == "cpu":
        torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    return Run(cfg)
