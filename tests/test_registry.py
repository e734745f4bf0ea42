"""Registry: name -> object, name defaults, duplicates naming both distributions, did-you-mean."""

from __future__ import annotations

import pytest

from oodbench.api import Algorithm
from oodbench.errors import UsageError
from oodbench.registry import ContractError, DuplicateNameError, Registry


def Named(name: str | None) -> type:
    """A minimal algorithm class called ``name`` (algorithms, backbones and targets register classes)."""
    return type(f"Algo_{name}", (Algorithm,), {"name": name})


@pytest.fixture
def algorithms() -> Registry:
    registry = Registry("algorithms")
    registry.add(Named("erm"), None, "oodbench.builtin.erm", "oodbench")
    registry.add(Named("irm"), None, "irm", "oodbench-methods")
    registry.add(Named("groupdro"), None, "groupdro", "oodbench-methods")
    return registry


def test_add_and_get_return_the_object_and_who_registered_it():
    registry = Registry("algorithms")
    obj = Named("erm")
    entry = registry.add(obj, None, "oodbench.builtin.erm", "oodbench")
    assert registry.get("erm") is obj
    assert registry.entry("erm") == entry
    assert (entry.name, entry.obj, entry.plugin, entry.dist) == ("erm", obj, "oodbench.builtin.erm", "oodbench")
    assert "erm" in registry and "irm" not in registry
    assert len(registry) == 1


def test_name_defaults_to_obj_name_and_an_explicit_name_wins():
    registry = Registry("backbones")
    cnn, alias = Named("cnn"), Named("cnn")
    registry.add(cnn, None, "p", "d")
    registry.add(alias, "cnn_wide", "p", "d")
    assert registry.get("cnn") is cnn
    assert registry.get("cnn_wide") is alias
    assert registry.names() == ["cnn", "cnn_wide"]


def test_a_class_registers_under_its_name_attribute():
    class Algo(Algorithm):
        name = "vrex"

    registry = Registry("algorithms")
    registry.add(Algo, None, "vrex", "oodbench-methods")
    assert registry.get("vrex") is Algo


def test_a_class_that_is_not_an_algorithm_is_refused_naming_its_distribution():
    class Plain:
        name = "plain"

        def update(self, batches):
            return {}

    with pytest.raises(ContractError, match=r"algorithm 'plain' from some-dist is not a subclass of oodbench.api"):
        Registry("algorithms").add(Plain, None, "p", "some-dist")


@pytest.mark.parametrize("obj", [object(), Named(""), Named(None)])  # type: ignore[arg-type]
def test_an_object_without_a_name_is_refused_with_its_distribution(obj):
    registry = Registry("targets")
    with pytest.raises(DuplicateNameError, match=r"from some-dist has no name"):
        registry.add(obj, None, "p", "some-dist")
    assert len(registry) == 0


def test_duplicate_name_names_both_distributions_and_keeps_the_first(algorithms):
    first = algorithms.get("irm")
    second = Named("irm")
    with pytest.raises(DuplicateNameError) as info:
        algorithms.add(second, None, "irm", "irm-fork")
    message = str(info.value)
    assert "'irm'" in message
    assert "irm-fork" in message and "oodbench-methods" in message
    assert algorithms.get("irm") is first
    assert algorithms.entry("irm").dist == "oodbench-methods"


def test_duplicate_via_explicit_name_is_detected_too(algorithms):
    with pytest.raises(DuplicateNameError, match=r"'erm' from other-dist is already registered by oodbench"):
        algorithms.add(Named("something_else"), "erm", "p", "other-dist")


def test_unknown_name_is_a_usage_error_with_did_you_mean_and_the_allowed_list(algorithms):
    with pytest.raises(UsageError) as info:
        algorithms.get("ermm")
    message = str(info.value)
    assert "unknown algorithm 'ermm'" in message
    assert "did you mean 'erm'?" in message
    assert "(allowed: erm, groupdro, irm)" in message
    assert "\n" not in message


def test_unknown_name_without_a_close_match_still_lists_the_allowed_values(algorithms):
    with pytest.raises(UsageError) as info:
        algorithms.entry("zzzzzz")
    message = str(info.value)
    assert "did you mean" not in message
    assert "allowed: erm, groupdro, irm" in message


def test_an_empty_registry_says_nothing_is_installed():
    with pytest.raises(UsageError, match=r"unknown target 'float'.*\(none installed\)"):
        Registry("targets").get("float")


def test_where_prefixes_the_message(algorithms):
    with pytest.raises(UsageError) as info:
        algorithms.get("irn", where="--algorithm")
    message = str(info.value)
    assert message.startswith("--algorithm: unknown algorithm 'irn'")
    assert "did you mean 'irm'?" in message
    assert algorithms.unknown_message("irn").startswith("unknown algorithm 'irn'")


def test_names_entries_and_iteration_are_sorted(algorithms):
    assert algorithms.names() == ["erm", "groupdro", "irm"]
    assert [e.name for e in algorithms] == ["erm", "groupdro", "irm"]
    assert [e.name for e in algorithms.entries()] == ["erm", "groupdro", "irm"]
    assert {e.name: e.dist for e in algorithms} == {"erm": "oodbench", "groupdro": "oodbench-methods",
                                                    "irm": "oodbench-methods"}
