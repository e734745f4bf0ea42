"""Fuzzing the parsers a user feeds: matrix files, dataset specs and the ``run`` options. Any input is accepted
(exit 0) or refused with one line (a UsageError, exit 2), never a traceback. The counts are in
docs/reliability.md; ``derandomize`` makes every CI run try the same inputs."""

from __future__ import annotations

import contextlib
import copy
import io
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from oodbench.cli import main
from oodbench.data.catalog import shipped_dir
from oodbench.data.spec import load_spec, parse_spec
from oodbench.errors import UsageError
from oodbench.matrix import TOP_LEVEL_KEYS, Overrides, expand, load_matrix, parse_matrix
from oodbench.plugins import get_plugins

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=400, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
NAMES = ["colored_mnist", "colored_mnist_domainbed", "cnn", "mlp", "snn", "erm", "irm", "group_dro", "float",
         "memristor", "ermm", "", "lr", "seed", "0"]
NUMBERS = st.one_of(st.integers(-3, 12), st.sampled_from([2**31, 2**32, 2**64, -2**63, 10**20]),
                    st.floats(allow_nan=True, allow_infinity=True))
SCALARS = st.one_of(NUMBERS, st.booleans(), st.sampled_from(NAMES), st.text(max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(NAMES + ["epochs",
                                                                       "batch_size", "n_hparams", "trials"]),
                                                                       inner, max_size=4)), max_leaves=12)


def accepted_or_one_line(call, accepted: str) -> None:
    """``call()`` returns, or raises a UsageError whose message is one line; anything else fails the test."""
    try:
        call()
    except UsageError as error:
        text = str(error)
        assert text and "\n" not in text and "Traceback" not in text, text
        event("refused")
    else:
        event(accepted)


def edits(paths: list[tuple]) -> st.SearchStrategy:
    """One to three (path, value) edits: a value replaced, or a key deleted (KeyError)."""
    return st.lists(st.tuples(st.sampled_from(paths), st.one_of(VALUES, st.just(KeyError))), min_size=1, max_size=3)


def written(tmp_path_factory, name: str, text: str) -> Path:
    path = tmp_path_factory.getbasetemp() / name
    path.write_text(text)
    return path


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _paths(inner, (*prefix, i))


def _mutated(data: dict, edits) -> dict:
    """``data`` with each (path, value) edit applied: a replaced value, or a deleted key (value KeyError)."""
    data = copy.deepcopy(data)
    for path, value in edits:
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            if value is KeyError:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    return data


@FUZZ
@given(st.dictionaries(st.sampled_from([*TOP_LEVEL_KEYS, "colour", "seed"]), VALUES, max_size=8))
def test_matrix_data_is_planned_or_refused_in_one_line(data):
    accepted_or_one_line(lambda: expand(parse_matrix(data, "fuzz.toml"), get_plugins(), Overrides()), "planned")


MATRIX = tomllib.loads(resources.files("oodbench.matrices").joinpath("seed-table.toml").read_text())
MATRIX_PATHS = [p for p in _paths(MATRIX) if p] + [("hparams", "erm", "weight_decay"), ("training", "holdout_fraction"),
                                                     ("search", "n_hparams"), ("exclude",), ("include",)]


@FUZZ
@given(edits(MATRIX_PATHS))
def test_mutated_matrices_are_planned_or_refused_in_one_line(changes):
    matrix = _mutated(MATRIX, changes)
    accepted_or_one_line(lambda: expand(parse_matrix(matrix, "fuzz.toml"), get_plugins(), Overrides()), "planned")


@FUZZ
@given(st.text(max_size=200))
def test_matrix_text_is_read_or_refused_in_one_line(tmp_path_factory, text):
    path = written(tmp_path_factory, "fuzz-matrix.toml", text)
    accepted_or_one_line(lambda: expand(load_matrix(str(path)), get_plugins(), Overrides()), "planned")


SPEC = tomllib.loads((shipped_dir() / "colored_mnist.toml").read_text())
SPEC_PATHS = [p for p in _paths(SPEC) if p]


@FUZZ
@given(edits(SPEC_PATHS))
def test_mutated_specs_are_loaded_or_refused_in_one_line(changes):
    spec = _mutated(SPEC, changes)
    accepted_or_one_line(lambda: parse_spec(spec, Path("fuzz.toml")), "loaded")


@FUZZ
@given(st.text(max_size=300))
def test_spec_text_is_loaded_or_refused_in_one_line(tmp_path_factory, text):
    path = written(tmp_path_factory, "fuzz-spec.toml", text)
    accepted_or_one_line(lambda: load_spec(path), "loaded")


KEYS = ["lr", "erm.lr", "weight_decay", "batch_size", "epochs", "holdout_fraction", "train_eval_size", "mlp.hidden",
        "mlp.depth", "cnn.hidden", "irm.penalty_weight", "dann.domains", "memristor.r_on", "nope", "erm.", ".lr", ""]
TEXT_VALUES = st.one_of(st.text(max_size=12), NUMBERS.map(str), st.sampled_from(
    ["nan", "-inf", "1e400", "1e-3,1e-2", "[1, 2]", "\"x\"", "true", "0x10", "1_000", "", ",", "1e-3,"]))
OPTIONS = st.one_of(
    st.tuples(st.just("--set"), st.tuples(st.sampled_from(KEYS), TEXT_VALUES).map(lambda kv: f"{kv[0]}={kv[1]}")),
    st.tuples(st.just("--set"), st.text(max_size=12)),
    st.tuples(st.sampled_from(["--seeds", "--epochs", "--n-hparams", "--trials", "--jobs"]),
              st.one_of(TEXT_VALUES, st.integers(-2, 6).map(str))),
    st.tuples(st.sampled_from(["-a", "-b", "-d", "-t"]), st.sampled_from(NAMES)),
    st.tuples(st.just("--matrix"), st.sampled_from(["quick", "seed-table", "domainbed-cmnist", "nope", "x.toml"])),
)


@FUZZ
@given(st.lists(OPTIONS, max_size=5))
def test_run_options_are_planned_or_refused_in_one_line(options):
    argv = ["run", "--dry-run", *(part for option in options for part in option)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse's own refusals
            code = exit.code
    lines = [line for line in err.getvalue().splitlines() if not line.startswith("oodbench: warning:")]
    assert code in (0, 2), (argv, code, err.getvalue())
    if code == 2:
        assert len(lines) == 1 and "Traceback" not in err.getvalue(), (argv, err.getvalue())
    else:
        assert "would run" in out.getvalue(), argv
    event("planned" if code == 0 else "refused")
