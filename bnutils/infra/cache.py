"""Results of long runs, cached on disk by their parameters and written atomically.

A cache entry's key hashes three things: a name, the parameters, and the code the result depends
on. The code part (:func:`code_version`) is the source of the module that computes the result and
of every ``bnutils`` module it imports, directly or not, read as a syntax tree without docstrings
or comments. So a changed parameter or a changed line of that code never reuses a stale result,
while editing a docstring, a figure (:mod:`bnutils.infra.plotting`, :mod:`bnutils.infra.report`)
or an unrelated chapter keeps hours of cached runs.

:func:`cached_driver` turns an experiment function into a cached one whose key holds every
argument it was called with. Files are written to a temporary name and renamed into place, so an
interrupted run never leaves a half-written entry behind; an unreadable entry is recomputed, never
silently used. The folder is ``$BNUTILS_CACHE`` if set, else ``~/.cache/bnutils``;
``BNUTILS_REFRESH=1`` recomputes everything.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import torch

T = TypeVar("T")
PACKAGE = "bnutils"
#: Modules that only present results (figures, tables, the command line): never part of a key.
PRESENTATION = frozenset({"bnutils.infra.plotting", "bnutils.infra.report", "bnutils.cli",
                          "bnutils.benchmark", "bnutils.__main__"})


def cache_dir() -> Path:
    """The cache folder (created on first use)."""
    root = Path(os.environ.get("BNUTILS_CACHE") or Path.home() / ".cache" / "bnutils")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except (ImportError, AttributeError, ValueError):
        return None


def _module_file(name: str) -> Path | None:
    spec = _spec(name)
    return Path(spec.origin) if spec is not None and spec.origin else None


def _imports(name: str, tree: ast.Module) -> set[str]:
    """The ``bnutils`` modules that module ``name`` imports (``from . import x`` gives ``pkg.x``
    when that is a module, else ``pkg``)."""
    spec = _spec(name)
    is_package = spec is not None and spec.submodule_search_locations is not None
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] == PACKAGE and _module_file(m) is not None}


def _stripped(tree: ast.Module) -> str:
    """The syntax tree without docstrings, as text (comments never reach the tree)."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                and isinstance(first.value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


@lru_cache(maxsize=None)
def dependencies(module: str) -> tuple[str, ...]:
    """``module`` and every ``bnutils`` module it imports, transitively, minus
    :data:`PRESENTATION`; sorted."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or name in PRESENTATION:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            raise ValueError(f"cannot find the source of module {name!r}")
        todo += sorted(_imports(name, ast.parse(path.read_text())))
    return tuple(sorted(seen))


@lru_cache(maxsize=None)
def code_version(*modules: str) -> str:
    """A short hash of the code behind ``modules``: their :func:`dependencies`, read without
    docstrings and comments."""
    h = hashlib.sha256()
    for name in sorted({d for m in modules for d in dependencies(m)}):
        h.update(name.encode())
        h.update(_stripped(ast.parse(_module_file(name).read_text())).encode())
    return h.hexdigest()[:12]


def cache_key(name: str, params: dict[str, Any], code: Iterable[str] = ()) -> str:
    """``name-<hash>`` of a JSON-serialisable parameter dict (other values go through ``str``) and
    the :func:`code_version` of the modules ``code``."""
    blob = json.dumps(params, sort_keys=True, default=str)
    version = code_version(*code) if code else ""
    digest = hashlib.sha256(f"{name}|{blob}|{version}".encode()).hexdigest()[:16]
    return f"{name}-{digest}"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> Any | None:
    """The object stored at ``path``, or None when it is missing or unreadable (then removed)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # truncated or corrupted: recompute rather than trust it
        path.unlink(missing_ok=True)
        return None


def refreshing() -> bool:
    """True when ``BNUTILS_REFRESH=1`` asks for every result to be recomputed."""
    return os.environ.get("BNUTILS_REFRESH") == "1"


def lookup(name: str, params: dict[str, Any], *, code: Iterable[str] = ()) -> Any | None:
    """The cached result for ``(name, params, code)``, or None when there is none (or
    ``BNUTILS_REFRESH=1`` asks for recomputation)."""
    if refreshing():
        return None
    return load(cache_dir() / f"{cache_key(name, params, tuple(code))}.pt")


def cached(name: str, params: dict[str, Any], compute: Callable[[], T], *,
           code: Iterable[str] = (), refresh: bool = False) -> T:
    """The cached result for ``(name, params, code)``, computed and stored when absent.

    ``code``: the modules the result depends on (see :func:`code_version`). Set ``refresh=True``
    (or ``BNUTILS_REFRESH=1``) to recompute.
    """
    path = cache_dir() / f"{cache_key(name, params, tuple(code))}.pt"
    if not (refresh or refreshing()):
        hit = load(path)
        if hit is not None:
            return hit
    result = compute()
    atomic_save(result, path)
    return result


def cached_driver(fn: Callable[..., T] | None = None, *, ignore: tuple[str, ...] = ()
                  ) -> Callable[..., T]:
    """Decorate an experiment driver so that its result is cached under its own name, every
    argument it is called with (defaults included, except those in ``ignore``) and the code of
    its module. The undecorated function stays available as ``driver.__wrapped__``."""
    if fn is None:
        return functools.partial(cached_driver, ignore=ignore)
    signature = inspect.signature(fn)
    name = f"{fn.__module__.rpartition('.')[2]}.{fn.__name__}"

    @functools.wraps(fn)
    def driver(*args: Any, **kwargs: Any) -> T:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        params = {k: v for k, v in bound.arguments.items() if k not in ignore}
        return cached(name, params, lambda: fn(*args, **kwargs), code=(fn.__module__,))

    return driver
