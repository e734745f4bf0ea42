"""Caches written whole or not at all: a temp file in the same directory, then a rename.

A reader never sees half a file; a writer that cannot write (full disk,
read-only directory) warns and carries on, since a missing cache costs a
rebuild, not the run; temp files a killed writer left behind are removed.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import BinaryIO, Callable

STALE_TMP_S = 3600.0
"""A temp file older than this is a leftover of a killed writer (a live one finishes in seconds)."""


def write_cache(path: Path, write: Callable[[BinaryIO], None], what: str) -> bool:
    """Write ``path`` through ``write(stream)`` atomically; False (with a warning naming ``what``) if it failed."""
    tmp = None
    prefix = f".{path.stem}-"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(path.parent, prefix)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(tmp, path)
        tmp = None
        return True
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError
        warnings.warn(f"could not write {what} {path}: {error}; set OODBENCH_DATA to a writable directory")
        return False
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def remove_stale_tmp(directory: Path, prefix: str) -> None:
    """Delete ``prefix*.tmp`` files older than ``STALE_TMP_S`` in ``directory``."""
    cutoff = time.time() - STALE_TMP_S
    for leftover in directory.glob(f"{prefix}*.tmp"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except OSError:
            continue
