"""Built environments on disk, keyed by a hash of the normalised spec, the seed and a format version.

Editing a spec changes its hash, so a stale file is never read; bumping
``FORMAT_VERSION`` does the same when the construction code changes what a
spec means. Files are written to a temp name and renamed, so a reader never
sees half a file, and an unreadable file is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from oodbench.api import Environment

FORMAT_VERSION = 2
"""Bump when the construction of environments from a spec changes. 2: ``images = "both"`` draws its coins
per base set (train, then test), which changes e.g. colored_mnist_domainbed."""

PARTS = ("x", "y", "attribute", "group")


def cache_key(normalized: dict[str, Any], seed: int) -> str:
    """sha256 of the spec's data, the seed and the format version."""
    text = json.dumps({"format": FORMAT_VERSION, "seed": seed, "spec": normalized}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def spec_hash(normalized: dict[str, Any]) -> str:
    """sha256 of the spec's data and the format version: equal hashes build equal environments for every seed,
    so results (and leaderboard baselines) of two runs are comparable."""
    text = json.dumps({"format": FORMAT_VERSION, "spec": normalized}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_file(root: Path, name: str, normalized: dict[str, Any], seed: int) -> Path:
    """``root/<name>-<hash16>-seed<N>.pt``: readable names, the hash decides validity."""
    return Path(root) / f"{name}-{cache_key(normalized, seed)[:16]}-seed{seed}.pt"


def load_or_build(path: Path, build: Callable[[], list[Environment]]) -> list[Environment]:
    """The environments stored at ``path``, or ``build()`` stored there for next time."""
    stored = _read(path)
    if stored is not None:
        return stored
    environments = build()
    _write(environments, path)
    return environments


def _read(path: Path) -> list[Environment] | None:
    if not path.exists():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        return [Environment(name=e["name"], role=e["role"], ceiling=e["ceiling"], **{p: e[p] for p in PARTS})
                for e in stored]
    except Exception as error:  # truncated, tampered or an old layout: all mean rebuild
        warnings.warn(f"discarding unreadable dataset cache {path}: {error}")
        path.unlink(missing_ok=True)
        return None


def _write(environments: list[Environment], path: Path) -> None:
    """Write-then-rename; a cache that cannot be written costs a rebuild next time, not this run."""
    rows = [{"name": e.name, "role": e.role, "ceiling": e.ceiling, **{p: getattr(e, p) for p in PARTS}}
            for e in environments]
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        with os.fdopen(handle, "wb") as stream:
            torch.save(rows, stream)
        os.replace(tmp, path)
        tmp = None
    except OSError as error:
        warnings.warn(f"could not write dataset cache {path}: {error}; set OODBENCH_DATA to a writable directory")
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
