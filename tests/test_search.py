"""Random search: declared spaces, deterministic draws inside them, pinned values, and refused values."""

import random
import re

import pytest

from oodbench.api import Bounded, Choice, IntRange, LogUniform, OneOf, SingleModel, Uniform
from oodbench.errors import UsageError
from oodbench.matrix import Overrides, expand, parse_matrix
from oodbench.plugins import get_plugins
from oodbench.registry import Registry
from oodbench.search import space_of


def _matrix(**extra):
    data = {"datasets": ["colored_mnist"], "backbones": ["mlp"], "algorithms": ["erm"], "targets": ["float"]}
    return parse_matrix(data | extra, "m.toml")


def _cells(overrides=None, **extra):
    return expand(_matrix(**extra), get_plugins(), overrides or Overrides())


@pytest.mark.parametrize("dist", [LogUniform(1e-5, 1e-2), Uniform(-1.0, 2.0), IntRange(3, 9), IntRange(1, 10_000, log=True),
                                  Choice("a", "b", "c")])
def test_draws_stay_inside_the_declared_range_and_cover_it(dist):
    values = [dist.sample(random.Random(i)) for i in range(400)]
    assert all(dist.contains(v) for v in values)
    assert len(set(values)) > 2  # a distribution, not a constant
    if isinstance(dist, LogUniform):  # log-uniform: as many draws below the geometric mean as above
        below = sum(v < (dist.low * dist.high) ** 0.5 for v in values)
        assert 140 < below < 260


def test_limits_widen_what_may_be_set_but_not_what_is_drawn():
    lr = LogUniform(1e-4, 1e-3, limits=(1e-6, 1.0))
    assert lr.contains(1e-2) and not lr.contains(2.0)
    assert all(1e-4 <= lr.sample(random.Random(i)) <= 1e-3 for i in range(100))
    assert not Bounded(1, 64).searched and Bounded(1, 64).contains(1) and not Bounded(1, 64).contains(0)
    mode = OneOf("none", "label")
    assert not mode.searched and mode.contains("label") and not mode.contains("cdan") and not mode.contains(0)
    assert not OneOf(0, 1).contains(True) and not OneOf(0, 1).contains(1.0)
    with pytest.raises(ValueError, match="enclosing"):
        LogUniform(1e-4, 1e-3, limits=(1e-3, 1.0))
    with pytest.raises(ValueError, match="0 < low < high"):
        LogUniform(0.0, 1.0)


def test_configuration_zero_is_the_defaults_and_the_others_are_drawn_inside_the_space():
    cells = _cells(Overrides(n_hparams=4))
    assert [c.config for c in cells] == [0, 1, 2, 3]
    assert cells[0].algorithm_hparams == {"lr": 1e-3, "weight_decay": 0.0}
    space = space_of(get_plugins().registry("algorithms").get("erm"))
    drawn = [c.algorithm_hparams for c in cells[1:]]
    assert all(space[k].contains(h[k]) and 10 ** -4.5 <= h["lr"] <= 10 ** -2.5 for h in drawn for k in h)
    assert len({h["lr"] for h in drawn}) == 3
    assert all(c.backbone_hparams == {"hidden": 256, "depth": 2} for c in cells)  # Bounded: never searched


def test_draws_are_deterministic_and_do_not_depend_on_the_rest_of_the_matrix():
    alone = _cells(Overrides(n_hparams=3))
    crowded = _cells(Overrides(n_hparams=3), algorithms=["erm", "group_dro"], seeds=[0, 5])
    erm = [c for c in crowded if c.algorithm == "erm" and c.seed == 0]
    assert [c.algorithm_hparams for c in alone] == [c.algorithm_hparams for c in erm]
    trial5 = [c for c in crowded if c.algorithm == "erm" and c.seed == 5]
    assert [c.algorithm_hparams for c in trial5] == [c.algorithm_hparams for c in erm]  # trials share configs
    dro = [c for c in crowded if c.algorithm == "group_dro" and c.seed == 0]
    assert dro[1].algorithm_hparams["lr"] != erm[1].algorithm_hparams["lr"]  # seeded per algorithm
    assert len({c.training_key for c in crowded}) == len(crowded)


def test_pinned_values_are_not_searched():
    cells = _cells(Overrides(n_hparams=3, sets=[("lr", 2e-3)]))
    assert {c.algorithm_hparams["lr"] for c in cells} == {2e-3}
    assert len({c.algorithm_hparams["weight_decay"] for c in cells}) == 3
    table = _cells(Overrides(n_hparams=3), hparams={"erm": {"weight_decay": 1e-4}})
    assert {c.algorithm_hparams["weight_decay"] for c in table} == {1e-4}


def test_trials_are_seeds_and_conflict_with_explicit_seeds():
    assert sorted({c.seed for c in _cells(Overrides(trials=3))}) == [0, 1, 2]
    assert sorted({c.seed for c in _cells(search={"trials": 2, "n_hparams": 2})}) == [0, 1]
    with pytest.raises(UsageError, match="--seeds and --trials"):
        _cells(Overrides(trials=3, seeds=[0]))
    with pytest.raises(UsageError, match="'seeds' or 'search.trials'"):
        _matrix(seeds=[0], search={"trials": 2})


@pytest.mark.parametrize("search, message", [
    ({"n_hparam": 3}, "search has unknown key 'n_hparam' (allowed: n_hparams, trials)"),
    ({"n_hparams": 0}, "search.n_hparams: expected an integer in [1, 10000], got 0"),
    ({"trials": "3"}, "search.trials: expected an integer in [1, 10000], got '3'"),
])
def test_a_bad_search_table_is_one_line(search, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        _matrix(search=search)


@pytest.mark.parametrize("key, value, message", [
    ("lr", 10.0, "--set lr: 10.0 is outside the declared range (allowed: log-uniform"),
    ("mlp.hidden", 0, "--set mlp.hidden: 0 is outside the declared range (allowed: fixed, allowed [1, 65536])"),
    ("mlp.depth", -1, "--set mlp.depth: -1 is outside the declared range"),
])
def test_values_outside_a_declared_range_are_refused(key, value, message):
    with pytest.raises(UsageError) as caught:
        _cells(Overrides(sets=[(key, value)]))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_matrix_table_outside_the_range_is_refused():
    with pytest.raises(UsageError, match=r"m.toml: hparams.erm.lr: 5.0 is outside the declared range"):
        _cells(hparams={"erm": {"lr": 5.0}})


class _Outside(SingleModel):
    """An algorithm whose default lies outside its own space."""

    name = "outside"
    defaults = {**SingleModel.defaults, "penalty": 0.0}
    search_space = {**SingleModel.search_space, "penalty": LogUniform(1.0, 10.0)}


class _Unknown(SingleModel):
    """An algorithm whose space names a hyperparameter it does not have."""

    name = "unknown_key"
    search_space = {"momentum": Uniform(0.0, 1.0)}


@pytest.mark.parametrize("algorithm, message", [
    (_Outside, "default penalty=0.0 lies outside its declared range"),
    (_Unknown, "search_space names 'momentum', which is not in its defaults"),
])
def test_registration_refuses_an_inconsistent_space(algorithm, message):
    with pytest.raises(ValueError, match=message):
        Registry("algorithms").add(algorithm, None, "plugin", "oodbench-x")


def test_every_installed_algorithm_and_backbone_declares_a_consistent_space():
    plugins = get_plugins()
    for kind in ("algorithms", "backbones"):
        for entry in plugins.registry(kind):
            space, defaults = space_of(entry.obj), getattr(entry.obj, "defaults", {}) or {}
            assert space or not defaults, f"{kind[:-1]} {entry.name} has hyperparameters but no search space"
            assert all(space[k].contains(v) for k, v in defaults.items() if k in space)


def test_list_algorithms_shows_each_space(capsys):
    import json

    from oodbench.cli import main

    assert main(["list", "algorithms", "--json"]) == 0
    erm = next(e for e in json.loads(capsys.readouterr().out) if e["name"] == "erm")
    assert erm["search_space"]["lr"] == "log-uniform [3.16228e-05, 0.00316228], allowed [1e-06, 1]"
    assert main(["list", "backbones"]) == 0
    assert "hidden=256  (fixed, allowed [1, 65536])" in capsys.readouterr().out
