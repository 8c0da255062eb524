"""Command line: run a chapter through papermill, refresh the regression baselines.

    python -m bnutils list
    python -m bnutils run 01 --profile quick --seed 3 -p lr=0.1
    python -m bnutils run 01 --output /tmp/ch1.ipynb      # leave book/ untouched
    python -m bnutils execute --missing                   # chapters in book/ with no outputs
    python -m bnutils baselines                           # quick-profile copies in tests/baselines
    python -m bnutils pages                               # claims dashboard, reproducibility

Chapter ``NN`` is the notebook ``book/NN_<name>.ipynb``; its knobs and profiles live in the
module ``bnutils.chapters.<name>`` (``PROFILES``), which validates the parameters before a kernel
starts. A baseline in ``tests/baselines/`` keeps a chapter's code cells and the outputs that the
regression tests compare (cells tagged ``nbval-check-output``), nothing else.
"""
from __future__ import annotations

import argparse
import ast
import datetime as dt
import importlib
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from .infra.config import PROFILES as PROFILE_NAMES

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
BASELINES = ROOT / "tests" / "baselines"


def chapters() -> dict[str, Path]:
    """Chapter id ("01") -> its notebook in ``book/``."""
    return {p.name[:2]: p for p in sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))}


def _notebook(chapter: str) -> Path:
    found = chapters()
    key = chapter.zfill(2)
    if key not in found:
        raise SystemExit(f"error: unknown chapter {chapter!r}; allowed: {', '.join(found)}")
    return found[key]


def chapter_module(notebook: Path) -> ModuleType:
    """``book/NN_<name>.ipynb`` -> the module ``bnutils.chapters.<name>``."""
    return importlib.import_module(f"bnutils.chapters.{Path(notebook).stem[3:]}")


def parse_value(text: str) -> Any:
    """``3`` -> 3, ``0.1`` -> 0.1, ``[1,2]`` -> [1, 2], ``None`` -> None, anything else -> str."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_parameters(pairs: list[str]) -> dict[str, Any]:
    params = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"error: parameter {pair!r} is not of the form name=value")
        name, value = pair.split("=", 1)
        params[name.strip()] = parse_value(value.strip())
    return params


def has_outputs(path: Path) -> bool:
    cells = json.loads(path.read_text())["cells"]
    return any(c.get("outputs") for c in cells if c["cell_type"] == "code")


def run_chapter(chapter: str, parameters: dict[str, Any], output: Path | None = None) -> Path:
    """Validate, execute one chapter with papermill, write it, return its path.

    The terminal shows papermill's progress bar and one result line, nothing else: the kernel
    talks over a Unix socket in a private folder (IPC transport, so it has no reason to warn about
    unencrypted TCP), the temporary file ends in ``.ipynb`` and every cell has an id."""
    import shutil
    import tempfile

    import papermill as pm
    from traitlets.config import Config

    from .infra.report import library_versions

    nb = _notebook(chapter)
    try:
        cfg = chapter_module(nb).PROFILES.configure(**parameters)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    output = Path(output) if output else nb
    t0 = time.perf_counter()
    tmp = output.with_name(f".{output.stem}.running.ipynb")
    sockets = tempfile.mkdtemp(prefix="bnutils-kernel-")
    kernel = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}})
    try:
        pm.execute_notebook(_with_cell_ids(nb), str(tmp), parameters=parameters,
                            progress_bar=True, cwd=str(nb.parent), kernel_name="python3",
                            log_output=False, config=kernel)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    wall = time.perf_counter() - t0
    _tidy(tmp, output, {"chapter": cfg.chapter, "parameters": parameters, **cfg.as_dict(),
                "versions": library_versions(),
                "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "wall_time_s": round(wall, 1)}, source=nb)
    tmp.replace(output)
    shown = _project_path(output) if output.resolve().is_relative_to(ROOT) else output
    print(f"wrote {shown} (profile {cfg.profile}, device {cfg.device}, "
          f"seed {cfg.seed}) in {wall:.0f} s", file=sys.stderr)
    return output


def _with_cell_ids(path: Path) -> Any:
    """The notebook at ``path`` with an id on every cell (nbformat warns about a missing one)."""
    import nbformat
    from nbformat.v4.nbbase import random_cell_id

    raw = json.loads(Path(path).read_text())
    if raw.get("nbformat", 4) == 4:
        raw["nbformat_minor"] = max(raw.get("nbformat_minor", 0), 5)
        for cell in raw["cells"]:
            cell.setdefault("id", random_cell_id())
    return nbformat.from_dict(raw)


def _project_path(path: str | Path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else p.name


def _tidy(path: Path, output: Path, record: dict[str, Any], source: Path | None = None) -> None:
    """Hide papermill's injected-parameters cell (the run table shows the values), drop stderr
    output (progress bars, warnings), store the run record in the notebook's metadata, and keep
    papermill's paths relative to the project (it records absolute ones, and ``path`` is a
    temporary name for ``output``); ``source`` is the notebook that ran."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("papermill", {})
    if source is not None:
        meta["input_path"] = _project_path(source)
    elif isinstance(meta.get("input_path"), str):
        meta["input_path"] = _project_path(meta["input_path"])
    meta["output_path"] = _project_path(output)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = tags + ["remove-cell"]
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if not (o.output_type == "stream" and o.name == "stderr")]
    nb.metadata["bnutils"] = record
    nbformat.write(nb, path)


def lighten(path: Path) -> None:
    """Reduce an executed chapter to a regression baseline: its code cells, with outputs kept
    only where the tests compare them (cells tagged ``nbval-check-output``)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if c.cell_type == "code"]
    for cell in nb.cells:
        if "nbval-check-output" not in cell.metadata.get("tags", []):
            cell.outputs = []
            cell.execution_count = None
    nbformat.write(nb, path)


def record_all_seeds(keys: list[str], profile: str, seeds: list[int], redo: bool) -> None:
    """Execute each chapter at each seed (into a temporary notebook) and add its verdicts to
    ``book/seeds.json``; seeds already recorded are skipped unless ``redo``, and the chapter in
    ``book/`` is read rather than executed again when it ran at that profile and seed."""
    import tempfile

    from .pages import SEEDS_FILE, load_seeds, read_chapter, record_seeds

    path = BOOK / SEEDS_FILE
    for key in keys:
        nb = _notebook(key)
        for seed in seeds:
            done = load_seeds(path).get(profile, {}).get(nb.name[:2], {})
            if str(seed) in done and not redo:
                continue
            published = read_chapter(nb)
            if (published.claims and published.record.get("profile") == profile
                    and published.record.get("seed") == seed):
                record_seeds(published, profile, seed, path)
                continue
            with tempfile.TemporaryDirectory() as tmp:
                out = run_chapter(key, {"profile": profile, "seed": seed},
                                  Path(tmp) / nb.name)
                record_seeds(read_chapter(out), profile, seed, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bnutils", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the chapters and whether they hold outputs")
    r = sub.add_parser("run", help="execute one chapter and write it back to book/")
    r.add_argument("chapter")
    r.add_argument("--profile", choices=PROFILE_NAMES)
    r.add_argument("--seed", type=int)
    r.add_argument("--device")
    r.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("--output", type=Path, help="write here instead of over the book's notebook")
    e = sub.add_parser("execute", help="execute every chapter into book/ (profile auto)")
    e.add_argument("--missing", action="store_true", help="only chapters with no stored outputs")
    e.add_argument("--profile", choices=PROFILE_NAMES, default="auto")
    b = sub.add_parser("baselines", help="refresh tests/baselines (quick profile, CPU)")
    b.add_argument("chapters", nargs="*")
    s = sub.add_parser("seeds", help="execute chapters at several seeds and record their "
                       "verdicts in book/seeds.json (the seed-robustness appendix)")
    s.add_argument("chapters", nargs="*")
    s.add_argument("--profile", choices=PROFILE_NAMES, default="quick")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--redo", action="store_true", help="also seeds already recorded")
    g = sub.add_parser("pages", help="write the claims dashboard and the reproducibility "
                       "appendix from the executed chapters (bnutils.pages)")
    g.add_argument("--book", type=Path, help="the folder of the chapters (default: book/)")
    n = sub.add_parser("bench", help="images/s of the book's training loop vs a plain "
                       "DataLoader loop (bnutils.benchmark)")
    n.add_argument("--device", default="auto")
    n.add_argument("--config", default="D")
    n.add_argument("--width", type=float, default=0.125)
    n.add_argument("--batch-size", type=int, default=128)
    n.add_argument("--steps", type=int, default=40, help="steps per timed segment")
    n.add_argument("--repeats", type=int, default=3, help="timed segments per loop")
    n.add_argument("--workers", type=int, default=2, help="DataLoader workers (plain loop)")
    n.add_argument("--n-train", type=int, default=10_000, help="class-balanced training images")
    n.add_argument("--amp", action="store_true", help="bf16 autocast")
    n.add_argument("--channels-last", action="store_true")
    n.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = ap.parse_args(argv)

    if args.cmd == "list":
        for key, path in chapters().items():
            print(f"{key}  {path.name:40s} {'executed' if has_outputs(path) else 'no outputs'}")
    elif args.cmd == "run":
        params = parse_parameters(args.parameter)
        for name in ("profile", "seed", "device"):
            if getattr(args, name) is not None:
                params[name] = getattr(args, name)
        run_chapter(args.chapter, params, args.output)
    elif args.cmd == "execute":
        for key, path in chapters().items():
            if not args.missing or not has_outputs(path):
                run_chapter(key, {"profile": args.profile})
    elif args.cmd == "baselines":
        BASELINES.mkdir(parents=True, exist_ok=True)
        for key in args.chapters or chapters():
            nb = _notebook(key)
            lighten(run_chapter(key, {"profile": "quick", "device": "cpu"}, BASELINES / nb.name))
    elif args.cmd == "seeds":
        record_all_seeds(args.chapters or list(chapters()), args.profile, args.seeds, args.redo)
    elif args.cmd == "pages":
        from .pages import write_pages
        try:
            for path in write_pages(args.book):
                print(f"wrote {path}", file=sys.stderr)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    elif args.cmd == "bench":
        from .benchmark import bench_cifar10
        try:
            print(bench_cifar10(**{k: v for k, v in vars(args).items() if k != "cmd"}).table())
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    return 0
