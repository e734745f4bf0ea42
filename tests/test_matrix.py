"""oodbench.matrix with the real built-in plugins: crossing, include/exclude, filters, hparams, skips."""

from __future__ import annotations

import contextlib
import itertools
import tomllib
from importlib import resources
from typing import Any

import pytest

from oodbench import hookimpl
from oodbench.api import Algorithm
from oodbench.errors import UsageError
from oodbench.matrix import (
    DEFAULT_MATRIX,
    TRAINING_DEFAULTS,
    Cell,
    Overrides,
    check_value,
    expand,
    load_matrix,
    named_matrices,
    parse_matrix,
    parse_set,
    parse_value,
)
from oodbench.plugins import KINDS, PluginRecord, get_plugins

SOURCE = "test.toml"


@pytest.fixture
def plugins():
    """The process-wide plugin set; every test must leave its registries as it found them."""
    plugins = get_plugins()
    before = {kind: plugins.registry(kind).names() for kind in KINDS}
    yield plugins
    assert {kind: plugins.registry(kind).names() for kind in KINDS} == before


def defaults(plugins, kind: str, name: str) -> dict[str, Any]:
    return dict(plugins.registry(kind).get(name).defaults)


def matrix(**fields: Any):
    base = {"datasets": ["colored_mnist"], "backbones": ["cnn"], "algorithms": ["erm"], "targets": ["float"],
            "seeds": [0]}
    return parse_matrix(base | fields, SOURCE)


def combos(cells: list[Cell]) -> set[tuple]:
    return {(c.dataset, c.backbone, c.algorithm, c.target, c.seed) for c in cells}


def by(cells: list[Cell], **match: Any) -> list[Cell]:
    return [c for c in cells if all(getattr(c, k) == v for k, v in match.items())]


@contextlib.contextmanager
def temporary_plugin(plugins, name: str, plugin: object):
    record = plugins.add(plugin, PluginRecord(name, f"tests-{name}", "0.0", "tests/test_matrix.py"))
    assert record.loaded, record.errors
    try:
        yield record
    finally:
        plugins.remove(name)


class TempAlgo(Algorithm):
    """A second algorithm with an lr, to tell qualified from unqualified --set."""

    name = "temp_algo"
    defaults = {"lr": 0.5, "steps": 3}


class SourceAlgo(Algorithm):
    """Needs a source domain, which the ``plain`` dataset below does not provide."""

    name = "needs_source"
    defaults = {"lr": 0.1}
    requires = frozenset({"source"})


class PlainDataset:
    """A dataset with environments only: no attribute, group, source or swap."""

    name = "plain"
    num_classes = 2
    attribute = "none"
    attribute_values = ("none",)
    provides = frozenset({"env"})
    swap_channels = None

    def build(self, seed, data_dir):
        raise AssertionError("planning must not build data")


class CNNOnlyTarget:
    """A target that runs CNNs only and has a hyperparameter of its own."""

    name = "cnn_only"
    defaults = {"noise": 0.0}

    def __init__(self, **hparams: Any) -> None:
        self.hparams = hparams

    def supports(self, backbone_name: str) -> bool:
        return backbone_name == "cnn"

    def deploy(self, network, calibration, seed):
        return network


class Provides:
    def __init__(self, kind: str, *objs: Any) -> None:
        self.kind, self.objs = kind, objs

    @hookimpl
    def oodbench_register_algorithms(self, register):
        if self.kind == "algorithms":
            for obj in self.objs:
                register(obj)

    @hookimpl
    def oodbench_register_targets(self, register):
        if self.kind == "targets":
            for obj in self.objs:
                register(obj)

    @hookimpl
    def oodbench_register_datasets(self, register):
        if self.kind == "datasets":
            for obj in self.objs:
                register(obj)


# --- named matrices ------------------------------------------------------------------------------------

def test_the_guard_matrix_covers_every_first_party_algorithm_the_snn_and_each_memristor_target(plugins):
    """Issue 18: a method the guard does not run is a method CI cannot see break."""
    cells = expand(load_matrix("guard"), plugins)
    assert all(c.skip_reason is None for c in cells)
    first_party = {"oodbench", "oodbench-methods", "oodbench-snn", "oodbench-memristor"}

    def shipped(kind):
        return {name for name in plugins.registry(kind).names() if plugins.dist_of(kind, name)[0] in first_party}

    assert {c.algorithm for c in cells} == shipped("algorithms")
    assert "snn" in {c.backbone for c in cells}
    assert {c.target for c in cells} == shipped("targets")
    assert {c.seed for c in cells} == {0, 1}


def test_the_shipped_quick_matrix_loads_and_expands(plugins):
    assert DEFAULT_MATRIX in named_matrices()
    shipped = tomllib.loads(resources.files("oodbench.matrices").joinpath("quick.toml").read_text())
    quick = load_matrix("quick")
    assert quick.name == "quick" and quick.source == "quick (built in)"
    assert load_matrix(None).as_dict() == quick.as_dict()
    cells = expand(quick, plugins)
    expected = set(itertools.product(shipped["datasets"], shipped["backbones"], shipped["algorithms"],
                                     shipped["targets"], shipped["seeds"]))
    expected |= {(i["dataset"], i["backbone"], i["algorithm"], i["target"], seed)
                 for i in shipped["include"] for seed in shipped["seeds"]}
    assert combos(cells) == expected and len(cells) == len(expected)
    assert {c.backbone for c in cells} >= {"cnn", "snn"} and {c.target for c in cells} > {"float", "memristor"}
    for cell in cells:
        assert cell.skip_reason is None
        assert cell.training == TRAINING_DEFAULTS | shipped["training"]
        own = shipped.get("hparams", {}).get(cell.algorithm, {})
        assert cell.algorithm_hparams == defaults(plugins, "algorithms", cell.algorithm) | own
        assert cell.backbone_hparams == defaults(plugins, "backbones", cell.backbone)
        assert cell.hparams()["training"] is cell.training
        assert cell.label() == f"{cell.dataset}/{cell.backbone}/{cell.algorithm}/{cell.target}/seed{cell.seed}"


def test_every_named_matrix_parses():
    for name in named_matrices():
        assert load_matrix(name).source == f"{name} (built in)"


# --- crossing, include, exclude, filters -------------------------------------------------------------

def test_axes_and_seeds_are_crossed(plugins):
    cells = expand(matrix(backbones=["cnn", "mlp"], seeds=[0, 1, 2]), plugins)
    assert len(cells) == 6
    assert combos(cells) == {("colored_mnist", b, "erm", "float", s) for b in ("cnn", "mlp") for s in (0, 1, 2)}
    assert len({c.key for c in cells}) == 6


def test_include_adds_a_combination_with_its_own_seeds(plugins):
    include = [{"dataset": "colored_mnist", "backbone": "mlp", "algorithm": "erm", "target": "float", "seeds": [7]}]
    cells = expand(matrix(seeds=[0, 1], include=include), plugins)
    assert combos(cells) == {("colored_mnist", "cnn", "erm", "float", 0), ("colored_mnist", "cnn", "erm", "float", 1),
                             ("colored_mnist", "mlp", "erm", "float", 7)}


def test_include_without_seeds_uses_the_matrix_seeds_and_duplicates_collapse(plugins):
    include = [{"dataset": "colored_mnist", "backbone": "cnn", "algorithm": "erm", "target": "float"},
               {"dataset": "colored_mnist", "backbone": "mlp", "algorithm": "erm", "target": "float"}]
    cells = expand(matrix(seeds=[0, 1], include=include), plugins)
    assert len(cells) == 4  # the cnn include repeats crossed cells
    assert combos(cells) == {("colored_mnist", b, "erm", "float", s) for b in ("cnn", "mlp") for s in (0, 1)}


def test_include_respects_filters_and_seed_override(plugins):
    include = [{"dataset": "colored_mnist", "backbone": "mlp", "algorithm": "erm", "target": "float", "seeds": [7]}]
    m = matrix(include=include)
    assert {c.backbone for c in expand(m, plugins, Overrides(filters={"backbones": ["cnn"]}))} == {"cnn"}
    cells = expand(m, plugins, Overrides(seeds=[3]))
    assert combos(cells) == {("colored_mnist", "cnn", "erm", "float", 3), ("colored_mnist", "mlp", "erm", "float", 3)}


def test_include_naming_an_unknown_component_is_a_usage_error(plugins):
    include = [{"dataset": "colored_mnist", "backbone": "resnet", "algorithm": "erm", "target": "float"}]
    with pytest.raises(UsageError, match=r"test\.toml: include\[0\]\.backbone: unknown backbone 'resnet'.*allowed: .*cnn"):
        expand(matrix(include=include), plugins)


@pytest.mark.parametrize("value", [0, [], ["cnn"]])
def test_include_naming_something_that_is_no_name_is_a_usage_error(plugins, value):
    """Found by the fuzz test once seed-table had includes: a list or a number was a TypeError."""
    include = [{"dataset": "colored_mnist", "backbone": value, "algorithm": "erm", "target": "float"}]
    with pytest.raises(UsageError, match=r"^test\.toml: include\[0\]\.backbone must be a name, got "):
        expand(matrix(include=include), plugins)


def test_exclude_removes_by_partial_match(plugins):
    m = dict(backbones=["cnn", "mlp"], seeds=[0, 1, 2])
    all_cells = combos(expand(matrix(**m), plugins))
    one = combos(expand(matrix(**m, exclude=[{"backbone": "mlp", "seed": 1}]), plugins))
    assert all_cells - one == {("colored_mnist", "mlp", "erm", "float", 1)}
    some = combos(expand(matrix(**m, exclude=[{"backbone": "mlp"}]), plugins))
    assert all_cells - some == {("colored_mnist", "mlp", "erm", "float", s) for s in (0, 1, 2)}
    both = combos(expand(matrix(**m, exclude=[{"seed": 0}, {"backbone": "cnn", "seed": 2}]), plugins))
    assert both == {("colored_mnist", "cnn", "erm", "float", 1), ("colored_mnist", "mlp", "erm", "float", 1),
                    ("colored_mnist", "mlp", "erm", "float", 2)}
    none = combos(expand(matrix(**m, exclude=[{"backbone": "mlp", "algorithm": "irm"}]), plugins))
    assert none == all_cells


def test_exclude_also_drops_included_cells(plugins):
    include = [{"dataset": "colored_mnist", "backbone": "mlp", "algorithm": "erm", "target": "float"}]
    cells = expand(matrix(include=include, exclude=[{"backbone": "mlp"}]), plugins)
    assert {c.backbone for c in cells} == {"cnn"}


def test_filters_restrict_and_may_name_components_not_in_the_file(plugins):
    m = matrix(backbones=["cnn", "mlp"])
    assert {c.backbone for c in expand(m, plugins, Overrides(filters={"backbones": ["mlp"]}))} == {"mlp"}
    only_mlp = matrix(backbones=["mlp"])
    assert {c.backbone for c in expand(only_mlp, plugins, Overrides(filters={"backbones": ["cnn"]}))} == {"cnn"}
    cells = expand(m, plugins, Overrides(filters={"backbones": ["mlp", "cnn", "mlp"]}))
    assert len(cells) == 2


@pytest.mark.parametrize("axis, flag, wrong, right", [
    ("algorithms", "--algorithm", "ermm", "erm"),
    ("backbones", "--backbone", "cnnn", "cnn"),
    ("datasets", "--dataset", "colored_mnst", "colored_mnist"),
    ("targets", "--target", "flaot", "float"),
])
def test_unknown_filter_names_the_flag_and_suggests(plugins, axis, flag, wrong, right):
    with pytest.raises(UsageError) as info:
        expand(matrix(), plugins, Overrides(filters={axis: [wrong]}))
    message = str(info.value)
    assert message.startswith(f"{flag}: unknown {axis[:-1]} {wrong!r}")
    assert f"did you mean {right!r}" in message and "allowed: " in message


def test_unknown_name_in_the_file_names_the_file_and_field(plugins):
    with pytest.raises(UsageError, match=r"^test\.toml: algorithms: unknown algorithm 'no_such_algo'.*allowed: .*erm"):
        expand(matrix(algorithms=["erm", "no_such_algo"]), plugins)


def test_seeds_and_epochs_overrides(plugins):
    cells = expand(matrix(seeds=[0, 1], training={"epochs": 9}), plugins, Overrides(seeds=[4, 5, 6], epochs=2))
    assert sorted(c.seed for c in cells) == [4, 5, 6]
    assert {c.training["epochs"] for c in cells} == {2}
    assert {c.training["epochs"] for c in expand(matrix(training={"epochs": 9}), plugins)} == {9}


def test_empty_axis_selects_no_cells(plugins):
    assert expand(matrix(backbones=[]), plugins) == []


# --- hyperparameters ----------------------------------------------------------------------------------

def test_unqualified_set_applies_to_every_component_that_declares_it(plugins):
    m = matrix(backbones=["cnn", "mlp"], algorithms=["erm", "temp_algo"])
    with temporary_plugin(plugins, "temp", Provides("algorithms", TempAlgo)):
        cells = expand(m, plugins, Overrides(sets=[("lr", 0.25), ("hidden", 64)]))
    assert len(cells) == 4
    assert {c.algorithm_hparams["lr"] for c in cells} == {0.25}
    assert {c.backbone_hparams["hidden"] for c in cells} == {64}
    assert {c.training["batch_size"] for c in cells} == {TRAINING_DEFAULTS["batch_size"]}
    for cell in by(cells, algorithm="temp_algo"):
        assert cell.algorithm_hparams["steps"] == TempAlgo.defaults["steps"]
    for cell in by(cells, backbone="cnn"):
        assert cell.backbone_hparams["width"] == defaults(plugins, "backbones", "cnn")["width"]


def test_qualified_set_applies_only_to_that_component(plugins):
    m = matrix(backbones=["cnn", "mlp"], algorithms=["erm", "temp_algo"])
    with temporary_plugin(plugins, "temp", Provides("algorithms", TempAlgo)):
        cells = expand(m, plugins, Overrides(sets=[("erm.lr", 0.25), ("cnn.hidden", 64)]))
    for cell in by(cells, algorithm="erm"):
        assert cell.algorithm_hparams["lr"] == 0.25
    for cell in by(cells, algorithm="temp_algo"):
        assert cell.algorithm_hparams["lr"] == TempAlgo.defaults["lr"]
    for cell in by(cells, backbone="cnn"):
        assert cell.backbone_hparams["hidden"] == 64
    for cell in by(cells, backbone="mlp"):
        assert cell.backbone_hparams["hidden"] == defaults(plugins, "backbones", "mlp")["hidden"]


def test_qualified_set_beats_unqualified_whatever_the_order(plugins):
    m = matrix(algorithms=["erm", "temp_algo"])
    with temporary_plugin(plugins, "temp", Provides("algorithms", TempAlgo)):
        for sets in ([("erm.lr", 0.25), ("lr", 0.75)], [("lr", 0.75), ("erm.lr", 0.25)]):
            cells = expand(m, plugins, Overrides(sets=sets))
            assert by(cells, algorithm="erm")[0].algorithm_hparams["lr"] == 0.25
            assert by(cells, algorithm="temp_algo")[0].algorithm_hparams["lr"] == 0.75


def test_training_keys_via_set(plugins):
    m = matrix(algorithms=["erm", "temp_algo"])
    with temporary_plugin(plugins, "temp", Provides("algorithms", TempAlgo)):
        everywhere = expand(m, plugins, Overrides(sets=[("batch_size", 64), ("training.epochs", 1)]))
        erm_only = expand(m, plugins, Overrides(sets=[("erm.batch_size", 32)]))
    assert {c.training["batch_size"] for c in everywhere} == {64}
    assert {c.training["epochs"] for c in everywhere} == {1}
    assert by(erm_only, algorithm="erm")[0].training["batch_size"] == 32
    assert by(erm_only, algorithm="temp_algo")[0].training["batch_size"] == TRAINING_DEFAULTS["batch_size"]
    for cell in everywhere + erm_only:
        assert "batch_size" not in cell.algorithm_hparams


def test_per_algorithm_training_keys_in_the_file(plugins):
    m = matrix(algorithms=["erm", "temp_algo"], training={"epochs": 4},
               hparams={"erm": {"batch_size": 64, "lr": 0.002}, "temp_algo": {"epochs": 6}})
    with temporary_plugin(plugins, "temp", Provides("algorithms", TempAlgo)):
        cells = expand(m, plugins)
    erm, = by(cells, algorithm="erm")
    temp, = by(cells, algorithm="temp_algo")
    assert erm.training["batch_size"] == 64 and erm.training["epochs"] == 4
    assert erm.algorithm_hparams == defaults(plugins, "algorithms", "erm") | {"lr": 0.002}
    assert "batch_size" not in erm.algorithm_hparams
    assert temp.training["batch_size"] == TRAINING_DEFAULTS["batch_size"] and temp.training["epochs"] == 6


def test_file_hparams_for_backbones_and_the_command_line_wins(plugins):
    m = matrix(backbones=["cnn", "mlp"], hparams={"mlp": {"depth": 3}, "erm": {"lr": 0.002}})
    cells = expand(m, plugins, Overrides(sets=[("erm.lr", 0.004)]))
    assert by(cells, backbone="mlp")[0].backbone_hparams["depth"] == 3
    assert by(cells, backbone="cnn")[0].backbone_hparams == defaults(plugins, "backbones", "cnn")
    assert {c.algorithm_hparams["lr"] for c in cells} == {0.004}


@pytest.mark.parametrize("sets, fragment", [
    ([("nope", 1)], "--set nope"),
    ([("cnn.lr", 0.1)], "--set cnn.lr"),          # cnn has no lr
    ([("mlp.hidden", 3)], "--set mlp.hidden"),    # mlp is not selected
    ([("width", 8)], None),                        # cnn's width is fine
])
def test_set_keys_nothing_selected_declares_are_refused(plugins, sets, fragment):
    if fragment is None:
        assert {c.backbone_hparams["width"] for c in expand(matrix(), plugins, Overrides(sets=sets))} == {8}
        return
    with pytest.raises(UsageError) as info:
        expand(matrix(), plugins, Overrides(sets=sets))
    message = str(info.value)
    assert message.startswith(fragment)
    assert "allowed: " in message and "lr" in message and "erm.lr" in message and "batch_size" in message


def test_int_is_accepted_for_float_defaults_and_becomes_float(plugins):
    cells = expand(matrix(hparams={"erm": {"weight_decay": 0}}), plugins, Overrides(sets=[("lr", 1)]))
    (cell,) = cells
    assert cell.algorithm_hparams["lr"] == 1.0 and isinstance(cell.algorithm_hparams["lr"], float)
    assert isinstance(cell.algorithm_hparams["weight_decay"], float)
    as_float = expand(matrix(), plugins, Overrides(sets=[("lr", 1.0)]))[0]
    assert as_float.key == cell.key  # 1 and 1.0 are the same hyperparameter, so the same cell


@pytest.mark.parametrize("key, value", [("lr", True), ("lr", "abc"), ("hidden", 1.5), ("hidden", False),
                                        ("batch_size", "64"), ("epochs", 2.0)])
def test_wrong_types_are_refused(plugins, key, value):
    with pytest.raises(UsageError, match=rf"^--set {key}: expected \w+ like .*, got {value!r}"):
        expand(matrix(), plugins, Overrides(sets=[(key, value)]))


@pytest.mark.parametrize("hparams, fragment", [
    ({"erm": {"lrr": 1}}, "hparams.erm.lrr: unknown key 'lrr' (allowed: batch_size, epochs"),
    ({"erm": {"lr": "fast"}}, "hparams.erm.lr: expected float"),
    ({"cnn": {"batch_size": 64}}, "hparams.cnn.batch_size: unknown key 'batch_size' (allowed: hidden, width)"),
    ({"resnet": {"depth": 50}}, "[hparams.resnet] names no installed algorithm, backbone or target"),
])
def test_bad_hparams_in_the_file(plugins, hparams, fragment):
    with pytest.raises(UsageError) as info:
        expand(matrix(hparams=hparams), plugins)
    assert str(info.value).startswith(f"{SOURCE}: ")
    assert fragment in str(info.value)


@pytest.mark.parametrize("hparams, fragment", [
    ({"mlp": {"depthh": 3}}, "hparams.mlp.depthh: unknown key 'depthh' (allowed: depth, hidden)"),
    ({"mlp": {"depth": "deep"}}, "hparams.mlp.depth: expected int"),
])
def test_hparams_of_components_no_cell_selects_are_still_checked(plugins, hparams, fragment):
    with pytest.raises(UsageError) as info:
        expand(matrix(backbones=["cnn"], hparams=hparams), plugins)
    assert str(info.value).startswith(f"{SOURCE}: {fragment}")
    # and a valid table for an unselected component is fine
    assert len(expand(matrix(backbones=["cnn"], hparams={"mlp": {"depth": 3}}), plugins)) == 1


def test_check_value():
    table = {"lr": 0.1, "n": 3, "flag": False, "mode": "a"}
    assert check_value("lr", 2, table, "w") == 2.0
    assert check_value("n", 5, table, "w") == 5
    assert check_value("flag", True, table, "w") is True
    assert check_value("mode", "b", table, "w") == "b"
    for key, value in [("lr", True), ("n", True), ("flag", 1), ("mode", 1), ("n", "3"), ("lr", "0.1")]:
        with pytest.raises(UsageError, match=r"^w: expected"):
            check_value(key, value, table, "w")
    with pytest.raises(UsageError, match=r"^w: unknown key 'x' \(allowed: flag, lr, mode, n\)"):
        check_value("x", 1, table, "w")


# --- keys ---------------------------------------------------------------------------------------------

def test_training_key_is_shared_by_the_targets_of_a_cell(plugins):
    m = matrix(targets=["float", "cnn_only"], seeds=[0, 1])
    with temporary_plugin(plugins, "cnn-only", Provides("targets", CNNOnlyTarget)):
        cells = expand(m, plugins)
        noisy = expand(m, plugins, Overrides(sets=[("noise", 0.5)]))
    assert len(cells) == 4
    for seed in (0, 1):
        float_cell, = by(cells, seed=seed, target="float")
        other, = by(cells, seed=seed, target="cnn_only")
        assert float_cell.training_key == other.training_key
        assert float_cell.key != other.key
    assert len({c.training_key for c in cells}) == 2  # one per seed
    # a target hyperparameter changes the cell, not the training
    noisy_cell, = by(noisy, seed=0, target="cnn_only")
    plain_cell, = by(cells, seed=0, target="cnn_only")
    assert noisy_cell.target_hparams == {"noise": 0.5}
    assert noisy_cell.training_key == plain_cell.training_key and noisy_cell.key != plain_cell.key


def test_training_key_differs_across_seeds_hparams_and_budget(plugins):
    base, = expand(matrix(), plugins)
    other_seed, = expand(matrix(seeds=[1]), plugins)
    other_lr, = expand(matrix(), plugins, Overrides(sets=[("lr", 0.01)]))
    other_width, = expand(matrix(), plugins, Overrides(sets=[("width", 8)]))
    other_epochs, = expand(matrix(), plugins, Overrides(epochs=1))
    keys = [c.training_key for c in (base, other_seed, other_lr, other_width, other_epochs)]
    assert len(set(keys)) == len(keys)
    assert len({c.key for c in (base, other_seed, other_lr, other_width, other_epochs)}) == len(keys)


def test_cell_keys_are_stable_across_expansions(plugins, tmp_path):
    text = ('datasets = ["colored_mnist"]\nbackbones = ["cnn", "mlp"]\nalgorithms = ["erm"]\nseeds = [0, 1]\n'
            "[hparams.erm]\nlr = 0.002\n")
    path = tmp_path / "m.toml"
    path.write_text(text)
    first = [(c.label(), c.key, c.training_key) for c in expand(load_matrix(str(path)), plugins)]
    second = [(c.label(), c.key, c.training_key) for c in expand(load_matrix(str(path)), plugins)]
    assert first == second and len(first) == 4
    # the same matrix with fields in another order and lr spelt differently gives the same keys
    path.write_text("seeds = [0, 1]\nalgorithms = ['erm']\nbackbones = ['cnn', 'mlp']\ndatasets = ['colored_mnist']\n"
                    "[hparams.erm]\nlr = 2e-3\n")
    third = sorted((c.label(), c.key, c.training_key) for c in expand(load_matrix(str(path)), plugins))
    assert third == sorted(first)


# --- skip reasons -------------------------------------------------------------------------------------

def test_an_algorithm_requiring_metadata_the_dataset_lacks_is_skipped(plugins):
    m = matrix(datasets=["plain"], algorithms=["erm", "needs_source"])
    with temporary_plugin(plugins, "needs-source", Provides("algorithms", SourceAlgo)), \
            temporary_plugin(plugins, "plain", Provides("datasets", PlainDataset())):
        cells = expand(m, plugins)
    skipped, = by(cells, algorithm="needs_source")
    assert skipped.skip_reason is not None
    assert "needs_source" in skipped.skip_reason and "source" in skipped.skip_reason
    assert "plain" in skipped.skip_reason
    assert by(cells, algorithm="erm")[0].skip_reason is None


def test_a_target_that_does_not_support_the_backbone_is_skipped(plugins):
    m = matrix(backbones=["cnn", "mlp"], targets=["float", "cnn_only"])
    with temporary_plugin(plugins, "cnn-only", Provides("targets", CNNOnlyTarget)):
        cells = expand(m, plugins)
    assert len(cells) == 4
    skipped = [c for c in cells if c.skip_reason]
    assert [(c.backbone, c.target) for c in skipped] == [("mlp", "cnn_only")]
    assert "cnn_only" in skipped[0].skip_reason and "mlp" in skipped[0].skip_reason


def test_temporary_plugins_do_not_leak(plugins):
    with temporary_plugin(plugins, "temp", Provides("algorithms", TempAlgo)):
        assert "temp_algo" in plugins.registry("algorithms")
    assert "temp_algo" not in plugins.registry("algorithms")
    assert "temp" not in plugins.records
    with pytest.raises(UsageError, match="unknown algorithm 'temp_algo'"):
        expand(matrix(algorithms=["temp_algo"]), plugins)


# --- files and values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("1e-3", 1e-3), ("64", 64), ("-2", -2), ("0.5", 0.5), ("true", True), ("false", False), ('"x"', "x"),
    ("abc", "abc"), ("[1, 2]", [1, 2]), ("0,1", "0,1"), ("", ""), ("1_000", 1000),
])
def test_parse_value(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_parse_set():
    assert parse_set("lr=1e-3") == ("lr", 1e-3)
    assert parse_set(" erm.lr = 2 ") == ("erm.lr", 2)
    assert parse_set("name=a=b") == ("name", "a=b")
    for bad in ("lr", "=3", " =3"):
        with pytest.raises(UsageError, match=r"KEY=VALUE"):
            parse_set(bad)


@pytest.mark.parametrize("text, fragment", [
    ("datasets = [", "not valid TOML"),
    ("colour = 1", "unknown field 'colour' (allowed: name, description, requires, datasets"),
    ('seeds = "0"', "field 'seeds' must be a non-empty list of integers"),
    ("seeds = []", "field 'seeds' must be a non-empty list of integers"),
    ("seeds = [true]", "field 'seeds' must be a non-empty list of integers"),
    ("threads = 0", "field 'threads' is 0 (allowed: an integer in [1, 1024], the torch threads of every training)"),
    ("threads = true", "field 'threads' is True (allowed: an integer in [1, 1024]"),
    ('threads = "1"', "field 'threads' is '1' (allowed: an integer in [1, 1024]"),
    ('datasets = "colored_mnist"', "field 'datasets' must be a list of names"),
    ("[training]\nepochs = 1.5", "training.epochs: expected int"),
    ("[training]\nsteps = 1", "training.steps: unknown key 'steps' (allowed: batch_size, epochs"),
    ("training = 3", "field 'training' must be a table"),
    ("hparams = 3", "field 'hparams' must hold one table per component"),
    ('[[include]]\ndataset = "colored_mnist"\nalgorithm = "erm"', "include[0] lacks backbone, target"),
    ('[[include]]\ndataset = "x"\nbackbone = "x"\nalgorithm = "x"\ntarget = "x"\nseed = 1',
     "include[0] has unknown key 'seed' (allowed: dataset, backbone, algorithm, target, seeds)"),
    ('[[include]]\ndataset = "x"\nbackbone = "x"\nalgorithm = "x"\ntarget = "x"\nseeds = 1', "include[0].seeds"),
    ('[[exclude]]\nseeds = [1]', "exclude[0] has unknown key 'seeds' (allowed: dataset, backbone, algorithm"),
    ("include = 1", "field 'include' must be an array of tables"),
])
def test_malformed_matrix_files_name_the_file_and_field(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(UsageError) as info:
        load_matrix(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert fragment in message


def test_unknown_matrix_names_and_missing_files(tmp_path):
    with pytest.raises(UsageError, match=r"--matrix 'nope': not a file and not a named matrix \(named: .*quick"):
        load_matrix("nope")
    missing = tmp_path / "missing.toml"
    with pytest.raises(UsageError, match=r"no such file"):
        load_matrix(str(missing))
    with pytest.raises(UsageError, match=r"no such file"):
        load_matrix(str(tmp_path))  # a directory


def test_a_file_matrix_is_named_after_the_file_unless_it_says(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('datasets = ["colored_mnist"]\n')
    assert load_matrix(str(path)).name == "sweep"
    assert load_matrix(str(path)).source == str(path)
    path.write_text('name = "mine"\n')
    assert load_matrix(str(path)).name == "mine"
    assert load_matrix(str(path)).targets == ["float"]


class EpochsAlgo(Algorithm):
    """Declares a hyperparameter that shares its name with a training option."""

    name = "epochs_algo"
    defaults = {"epochs": 3}


def test_training_options_are_range_checked(plugins):
    for item in ("holdout_fraction=0", "holdout_fraction=0.9", "epochs=0", "training.batch_size=0",
                 "train_eval_size=-1"):
        with pytest.raises(UsageError, match="out of range"):
            expand(matrix(), plugins, Overrides(sets=[parse_set(item)]))


def test_training_scope_reaches_the_training_budget_only(plugins):
    with temporary_plugin(plugins, "epochs-algo", Provides("algorithms", EpochsAlgo)):
        (cell,) = expand(matrix(algorithms=["epochs_algo"]), plugins,
                         Overrides(sets=[parse_set("training.epochs=7")]))
    assert cell.training["epochs"] == 7 and cell.algorithm_hparams["epochs"] == 3


def test_training_options_in_an_unselected_algorithms_table_are_range_checked(plugins):
    m = parse_matrix({"datasets": ["colored_mnist"], "backbones": ["cnn"], "algorithms": ["erm"],
                      "hparams": {"bi_loss": {"batch_size": 0}}}, SOURCE)
    if "bi_loss" not in plugins.registry("algorithms"):
        pytest.skip("oodbench-methods is not installed")
    with pytest.raises(UsageError, match=r"hparams\.bi_loss\.batch_size: 0 is out of range"):
        expand(m, plugins)


# --- sweeps -------------------------------------------------------------------------------------------

class HiddenTarget:
    """A target declaring ``hidden``, as the cnn backbone does, so one ``--set hidden`` reaches both."""

    name = "hidden_target"
    defaults = {"hidden": 1}

    def __init__(self, **hparams: Any) -> None:
        self.hparams = hparams

    def supports(self, backbone_name: str) -> bool:
        return True

    def deploy(self, network, calibration, seed):
        return network


@pytest.mark.parametrize("item, value", [
    ("lr=1e-4,1e-3,1e-2", [1e-4, 1e-3, 1e-2]), ("batch_size=32, 64", [32, 64]), ("mode=batch,online", ["batch", "online"]),
    ("lr=[1e-4, 1e-3]", [1e-4, 1e-3]), ('mode="a,b"', "a,b"), ("lr=1e-3", 1e-3),
])
def test_a_comma_list_on_the_command_line_is_a_sweep(item, value):
    assert parse_set(item)[1] == value


def test_swept_values_give_one_cell_each_and_two_sweeps_cross(plugins):
    cells = expand(matrix(), plugins, Overrides(sets=[parse_set("lr=1e-4,1e-3,1e-2"),
                                                      parse_set("batch_size=32,64")]))
    points = {(c.algorithm_hparams["lr"], c.training["batch_size"]) for c in cells}
    assert points == set(itertools.product([1e-4, 1e-3, 1e-2], [32, 64])) and len(cells) == 6
    assert len({c.training_key for c in cells}) == 6


def test_each_swept_cell_carries_the_values_its_sweeps_gave_it(plugins):
    from oodbench.report import variant_label

    cells = expand(matrix(seeds=[0, 1]), plugins, Overrides(sets=[parse_set("lr=1e-3,1e-2"),
                                                                 parse_set("batch_size=32,64")]))
    labels = {(c.seed, variant_label(c.variant)) for c in cells}
    assert labels == {(s, f"batch_size={b}, lr={v}") for s in (0, 1) for v in (0.001, 0.01) for b in (32, 64)}
    assert all(c.variant == {"lr": c.algorithm_hparams["lr"], "batch_size": c.training["batch_size"]} for c in cells)
    plain = expand(matrix(), plugins, Overrides(n_hparams=3))
    assert [c.variant for c in plain] == [{}, {}, {}]  # searched configurations are not a user's sweep


def test_arrays_in_matrix_files_are_sweeps(plugins, tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('datasets = ["colored_mnist"]\nbackbones = ["cnn"]\nalgorithms = ["erm"]\n'
                    "[training]\nbatch_size = [32, 64]\n[hparams.erm]\nlr = [1e-4, 1e-3]\nepochs = [1, 2]\n"
                    "[hparams.cnn]\nwidth = [8]\n")
    cells = expand(load_matrix(str(path)), plugins)
    assert len(cells) == 8 and {c.backbone_hparams["width"] for c in cells} == {8}
    assert {(c.training["batch_size"], c.algorithm_hparams["lr"], c.training["epochs"]) for c in cells} == set(
        itertools.product([32, 64], [1e-4, 1e-3], [1, 2]))


def test_a_later_single_value_replaces_a_sweep(plugins):
    cells = expand(matrix(hparams={"erm": {"lr": [1e-4, 1e-3]}}), plugins, Overrides(sets=[("lr", 0.5)]))
    assert [c.algorithm_hparams["lr"] for c in cells] == [0.5]


def test_one_set_reaching_two_components_varies_them_together(plugins):
    with temporary_plugin(plugins, "hidden-target", Provides("targets", HiddenTarget)):
        cells = expand(matrix(targets=["hidden_target"]), plugins, Overrides(sets=[parse_set("hidden=8,16")]))
    assert sorted((c.backbone_hparams["hidden"], c.target_hparams["hidden"]) for c in cells) == [(8, 8), (16, 16)]


@pytest.mark.parametrize("source, fragment", [
    ({"sets": [("lr", [1e-3, "x"])]}, "--set lr: expected float like 0.001, got 'x'"),
    ({"sets": [("batch_size", [64, 0])]}, "--set batch_size: 0 is out of range"),
    ({"sets": [("lr", [])]}, "--set lr: an empty list"),
    ({"sets": [("lr", [[1e-3]])]}, "--set lr: a sweep's values must be single values"),
    ({"hparams": {"erm": {"lr": [1e-3, True]}}}, f"{SOURCE}: hparams.erm.lr: expected float"),
    ({"hparams": {"cnn": {"width": [8, 1.5]}}}, f"{SOURCE}: hparams.cnn.width: expected int"),
])
def test_every_value_of_a_sweep_is_checked(plugins, source, fragment):
    with pytest.raises(UsageError) as info:
        expand(matrix(hparams=source.get("hparams", {})), plugins, Overrides(sets=source.get("sets", [])))
    assert str(info.value).startswith(fragment) and "\n" not in str(info.value)


def test_a_training_array_in_a_file_is_checked_on_parsing():
    with pytest.raises(UsageError, match=rf"^{SOURCE}: training.epochs: 0 is out of range"):
        matrix(training={"epochs": [1, 0]})


@pytest.mark.slow
def test_a_swept_run_reports_a_row_per_value_and_plots_the_sweep(tmp_path, capsys):
    from oodbench.cli import main

    run = tmp_path / "run"
    assert main(["run", "-d", "colored_mnist", "-b", "mlp", "-a", "erm", "--epochs", "1", "--set", "lr=1e-3,1e-2",
                 "--set", "batch_size=1024", "--set", "train_eval_size=200", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["report", str(run), "--format", "markdown"]) == 0
    table = capsys.readouterr().out
    assert "| hparams" in table and "lr=0.001" in table and "lr=0.01" in table
    assert main(["report", str(run), "--format", "html"]) == 0
    page = (run / "report.html").read_text()
    assert "Hyperparameter sweeps" in page and "test accuracy against lr" in page


def test_cells_of_a_missing_required_distribution_are_skipped_with_the_reason(plugins):
    base = {"datasets": ["colored_mnist"], "backbones": ["cnn"], "algorithms": ["erm"]}
    assert expand(parse_matrix(base | {"requires": ["oodbench"]}, "ok.toml"), plugins)
    needs = base | {"requires": ["oodbench", "oodbench-nowhere"], "algorithms": ["erm", "nowhere"],
                    "hparams": {"nowhere": {"lr": 1.0}},
                    "include": [{"dataset": "colored_mnist", "backbone": "snn2", "algorithm": "erm", "target": "float"}]}
    cells = {(c.backbone, c.algorithm): c for c in expand(parse_matrix(needs, "need.toml"), plugins)}
    assert cells[("cnn", "erm")].skip_reason is None  # what is installed runs; the rest is skipped, saying why
    for absent in (("cnn", "nowhere"), ("snn2", "erm")):
        assert cells[absent].skip_reason == ("not installed: from oodbench-nowhere, which the matrix requires "
                                             "(`make setup` installs them)")
    # a run that replaces the axis and filters the include out needs nothing from it
    cells = expand(parse_matrix(needs, "need.toml"), plugins, Overrides(filters={"algorithms": ["erm"],
                                                                                 "backbones": ["cnn"]}))
    assert [(c.backbone, c.algorithm) for c in cells] == [("cnn", "erm")]
    # without a missing distribution, an unknown name is the usual error
    with pytest.raises(UsageError, match=r"unknown algorithm 'nowhere'"):
        expand(parse_matrix(needs | {"requires": []}, "typo.toml"), plugins)
    with pytest.raises(UsageError, match=r"bad\.toml: field 'requires' must be a list of names"):
        parse_matrix(base | {"requires": "oodbench-methods"}, "bad.toml")
