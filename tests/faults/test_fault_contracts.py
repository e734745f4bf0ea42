"""Objects that break their kind's contract, unusable specs and broken baselines: refused up front with one line
naming who and what, never a traceback later in planning or training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import oodbench
from oodbench.cli import main
from oodbench.data.catalog import PATH_ENV
from oodbench.errors import UsageError
from oodbench.leaderboard import load
from oodbench.plugins import LOAD_PLUGINS_ENV, reset_plugins
from oodbench.testing import small_spec_text

PLAIN_MODULE = '''
from torch import nn
from oodbench import hookimpl


class SpectralDecoupling(nn.Module):
    """The shape DESIGN.md once described: an nn.Module with the methods, not an oodbench.api.Algorithm."""

    name = "spectral_decoupling"
    defaults = {"lr": 1e-3}
    requires = frozenset()

    def update(self, batches):
        return {}

    def predict(self, x):
        return x

    def network(self):
        return self


@hookimpl
def oodbench_register_algorithms(register):
    register(SpectralDecoupling)
'''

TARGET_WITHOUT_DEPLOY = '''
from oodbench import hookimpl


class Half:
    name = "half"
    defaults = {}

    def supports(self, backbone_name):
        return True


@hookimpl
def oodbench_register_targets(register):
    register(Half)
'''

DATASET_WITHOUT_CLASSES = '''
from oodbench import hookimpl


class Blobs:
    name = "blobs"
    attribute = "colour"
    attribute_values = ("a", "b")

    def build(self, seed, data_dir):
        return []


@hookimpl
def oodbench_register_datasets(register):
    register(Blobs())
'''


@pytest.mark.parametrize("module, kind, name, missing", [
    (PLAIN_MODULE, "algorithms", "spectral_decoupling", "is not a subclass of oodbench.api.Algorithm"),
    (TARGET_WITHOUT_DEPLOY, "targets", "half", "lacks the method(s) deploy"),
    (DATASET_WITHOUT_CLASSES, "datasets", "blobs", "lacks the attribute num_classes"),
], ids=["plain-module-algorithm", "target-without-deploy", "dataset-without-num_classes"])
def test_an_object_breaking_its_contract_is_refused_at_registration(fake_site, monkeypatch, capsys, module, kind,
                                                                    name, missing):
    fake_site.add_dist("oodbench-contract", {"contract": "fake_contract_mod"}, {"fake_contract_mod": module})
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "oodbench-contract")
    plugins = fake_site.load()
    assert name not in plugins.registry(kind)
    (record,) = [r for r in plugins.failed() if r.dist == "oodbench-contract"]
    (error,) = record.errors
    assert f"{name!r} from oodbench-contract" in error and missing in error and "\n" not in error
    # every run still plans: the broken object is left out, with one warning line naming it
    capsys.readouterr()
    assert main(["run", "-d", "colored_mnist", "-b", "mlp", "-a", "erm", "--dry-run"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(warnings) == 1 and "oodbench-contract" in warnings[0] and missing in warnings[0]


def test_a_run_naming_an_unusable_spec_is_refused_before_anything_trains(tmp_path, monkeypatch, capsys):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "broken.toml").write_text(small_spec_text().replace('values = ["red", "green"]',
                                                                   'values = ["red", "green", "blue"]'))
    monkeypatch.setenv(PATH_ENV, str(specs))
    reset_plugins()
    try:
        capsys.readouterr()
        code = main(["run", "-d", "broken", "-b", "mlp", "-a", "erm", "--out", str(tmp_path / "run")])
        err = capsys.readouterr().err
    finally:
        reset_plugins()
    lines = [line for line in err.splitlines() if not line.startswith("oodbench: warning:")]
    assert code == 2 and len(lines) == 1, err
    assert "'broken' cannot be used" in lines[0] and "broken.toml" in lines[0] and "attribute.values" in lines[0]
    assert not (tmp_path / "run").exists()


COMMITTED = Path(oodbench.__file__).parent / "leaderboards" / "guard.json"


@pytest.mark.parametrize("value, problem", [
    (math.nan, "must be a non-empty list of finite numbers"),
    (math.inf, "must be a non-empty list of finite numbers"),
    (True, "must be a non-empty list of finite numbers"),
])
def test_a_baseline_with_nan_or_infinite_samples_is_refused(tmp_path, value, problem):
    data = json.loads(COMMITTED.read_text())
    fp, samples = next(iter(data["entries"][0]["metrics"]["acc"]["samples"].items()))
    seed = next(iter(samples))
    samples[seed] = [value]
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(data))  # json writes NaN and Infinity, and reads them back
    where = rf"entries\[0\]\.metrics\.acc\.samples\.{fp}\.{seed}"
    with pytest.raises(UsageError, match=rf"{where} is .*{problem}") as caught:
        load(path)
    assert "\n" not in str(caught.value)


def test_a_nan_floor_is_refused(tmp_path):
    data = json.loads(COMMITTED.read_text())
    data["floor_pp"] = math.nan
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="'floor_pp' is nan: must be a finite number >= 0"):
        load(path)
