"""Results of long runs, cached on disk by their parameters and written atomically.

A cache entry's key is a hash of (name, parameters, the ``bnutils`` source code): change any
parameter or any line of the package and the entry no longer matches, so a stale result is never
reused. Files are written to a temporary name and renamed into place, so an interrupted run never
leaves a half-written entry behind; an unreadable entry is recomputed, never silently used.

The folder is ``$BNUTILS_CACHE`` if set, else ``~/.cache/bnutils``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

T = TypeVar("T")


def cache_dir() -> Path:
    """The cache folder (created on first use)."""
    root = Path(os.environ.get("BNUTILS_CACHE") or Path.home() / ".cache" / "bnutils")
    root.mkdir(parents=True, exist_ok=True)
    return root


@lru_cache(maxsize=1)
def code_version() -> str:
    """A short hash of every ``.py`` file in the package: part of every cache key."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def cache_key(name: str, params: dict[str, Any]) -> str:
    """``name-<hash>`` for a JSON-serialisable parameter dict (non-JSON values go through str)."""
    blob = json.dumps(params, sort_keys=True, default=str)
    digest = hashlib.sha256(f"{name}|{blob}|{code_version()}".encode()).hexdigest()[:16]
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


def cached(name: str, params: dict[str, Any], compute: Callable[[], T], *,
           refresh: bool = False) -> T:
    """Return the cached result for ``(name, params)``, computing and storing it when absent.

    Set ``refresh=True`` (or the environment variable ``BNUTILS_REFRESH=1``) to recompute.
    """
    path = cache_dir() / f"{cache_key(name, params)}.pt"
    if not (refresh or os.environ.get("BNUTILS_REFRESH") == "1"):
        hit = load(path)
        if hit is not None:
            return hit
    result = compute()
    atomic_save(result, path)
    return result
