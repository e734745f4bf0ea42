"""Built environments on disk, keyed by a hash of the normalised spec, the seed and a format version.

Editing a spec changes its hash, so a stale file is never read; bumping
``FORMAT_VERSION`` does the same when the construction code changes what a
spec means. Files are written to a temp name and renamed, so a reader never
sees half a file. Each file carries its own key and a sha256 of its tensors,
so a file that loads but holds other data (tampered bytes, another seed's file
copied over it) is rebuilt like an unreadable one, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from oodbench.api import Environment
from oodbench.data.atomic import write_cache

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


def digest(rows: list[dict[str, Any]]) -> str:
    """sha256 of every environment's name, role, ceiling and tensor bytes, in order."""
    hasher = hashlib.sha256()
    for row in rows:
        hasher.update(json.dumps([row["name"], row["role"], row["ceiling"]]).encode())
        for part in PARTS:
            tensor = row[part].contiguous()
            hasher.update(f"{part}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            hasher.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return hasher.hexdigest()


def load_or_build(path: Path, key: str, build: Callable[[], list[Environment]]) -> list[Environment]:
    """The environments stored at ``path`` under ``key``, or ``build()`` stored there for next time."""
    stored = _read(path, key)
    if stored is not None:
        return stored
    environments = build()
    _write(environments, path, key)
    return environments


def _read(path: Path, key: str) -> list[Environment] | None:
    if not path.exists():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(stored, dict) or stored.get("key") != key:
            raise ValueError("it was built for another spec, seed or format")
        rows = stored["environments"]
        if stored.get("sha256") != digest(rows):
            raise ValueError("its contents do not match their sha256")
        return [Environment(name=e["name"], role=e["role"], ceiling=e["ceiling"], **{p: e[p] for p in PARTS})
                for e in rows]
    except Exception as error:  # truncated, tampered, copied or an old layout: all mean rebuild
        warnings.warn(f"discarding unreadable dataset cache {path}: {error}")
        path.unlink(missing_ok=True)
        return None


def _write(environments: list[Environment], path: Path, key: str) -> None:
    rows = [{"name": e.name, "role": e.role, "ceiling": e.ceiling, **{p: getattr(e, p) for p in PARTS}}
            for e in environments]
    write_cache(path, lambda stream: torch.save({"key": key, "sha256": digest(rows), "environments": rows}, stream),
                "dataset cache")
