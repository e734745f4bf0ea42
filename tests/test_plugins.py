"""The plugin manager with real entry points of fake installed distributions (see ``fake_site``)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from oodbench import hookimpl
from oodbench.api import Algorithm
from oodbench.plugins import BUILTIN_PLUGINS, KINDS, LOAD_PLUGINS_ENV, PluginRecord, get_plugins, load_plugins

SHIPPED_SPECS = {p.stem for p in (Path(__file__).parents[1] / "datasets_spec").glob("*.toml")}
BUILTIN_NAMES = {"datasets": SHIPPED_SPECS, "backbones": {"cnn", "lenet", "mlp"}, "algorithms": {"erm"},
                 "targets": {"float"}}


def algorithm_module(*names: str, raise_after: str | None = None) -> str:
    """A plugin module registering one Algorithm subclass per name (then raising, if asked)."""
    classes = "".join(
        f"\nclass Algo{i}(Algorithm):\n    \"\"\"Third-party algorithm {name}.\"\"\"\n    name = {name!r}\n"
        f"    defaults = {{'lr': 0.01}}\n" for i, name in enumerate(names))
    body = "".join(f"    register(Algo{i})\n" for i in range(len(names)))
    if raise_after:
        body += f"    raise RuntimeError({raise_after!r})\n"
    return ("from oodbench import hookimpl\nfrom oodbench.api import Algorithm\n" + classes
            + "\n@hookimpl\ndef oodbench_register_algorithms(register):\n" + (body or "    pass\n"))


def names(plugins, kind: str) -> set[str]:
    return set(plugins.registry(kind).names())


# --- a third-party plugin is a first-class citizen -------------------------------------------------

def test_third_party_algorithm_is_registered_with_its_dist_and_version(fake_site, monkeypatch):
    fake_site.add_dist("oodbench-fake-irm", {"fake_irm": "fake_irm_mod"},
                       {"fake_irm_mod": algorithm_module("fake_irm")}, version="2.3.4")
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "oodbench-fake-irm")  # other installed plugins stay out of the way
    plugins = fake_site.load()
    assert get_plugins() is plugins

    module = importlib.import_module("fake_irm_mod")
    entry = plugins.registry("algorithms").entry("fake_irm")
    assert entry.obj is module.Algo0
    assert (entry.plugin, entry.dist) == ("fake_irm", "oodbench-fake-irm")
    assert plugins.dist_of("algorithms", "fake_irm") == ("oodbench-fake-irm", "2.3.4")

    record = plugins.records["fake_irm"]
    assert record.loaded and not record.builtin
    assert (record.dist, record.version, record.target) == ("oodbench-fake-irm", "2.3.4", "fake_irm_mod")
    assert record.hooks == ["oodbench_register_algorithms"]
    assert record.as_dict()["loaded"] is True and record.as_dict()["errors"] == []

    # the built-ins are still there, registered by the core distribution
    for kind, expected in BUILTIN_NAMES.items():
        assert expected <= names(plugins, kind)
    assert plugins.dist_of("algorithms", "erm")[0] == "oodbench"
    assert all(plugins.records[m].builtin and plugins.records[m].loaded for m in BUILTIN_PLUGINS)
    assert plugins.failed() == []


def test_a_register_call_with_an_explicit_name_uses_that_name(fake_site):
    source = """
        from oodbench import hookimpl
        from oodbench.builtin.cnn import CNN

        @hookimpl
        def oodbench_register_backbones(register):
            register(CNN, name="fake_cnn_alias")
    """
    fake_site.add_dist("fake-alias", {"alias": "fake_alias_mod"}, {"fake_alias_mod": source})
    plugins = fake_site.load()
    registry = plugins.registry("backbones")
    assert registry.entry("fake_cnn_alias").dist == "fake-alias"
    assert registry.get("fake_cnn_alias") is registry.get("cnn")


# --- OODBENCH_LOAD_PLUGINS ---------------------------------------------------------------------------

@pytest.fixture
def two_dists(fake_site):
    fake_site.add_dist("fake-alpha", {"alpha": "fake_alpha_mod"}, {"fake_alpha_mod": algorithm_module("alpha_algo")})
    fake_site.add_dist("fake_beta", {"beta": "fake_beta_mod"}, {"fake_beta_mod": algorithm_module("beta_algo")})
    return fake_site


def test_unset_env_var_loads_every_plugin(two_dists, monkeypatch):
    monkeypatch.delenv(LOAD_PLUGINS_ENV)
    plugins = two_dists.load()
    assert {"alpha_algo", "beta_algo", "erm"} <= names(plugins, "algorithms")
    assert plugins.records["alpha"].dist == "fake-alpha"
    assert plugins.records["beta"].dist == "fake_beta"
    assert plugins.warnings == []


def test_empty_env_var_loads_no_third_party_plugin(two_dists, monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    plugins = two_dists.load()
    assert names(plugins, "algorithms") == {"erm"}
    assert set(plugins.records) == set(BUILTIN_PLUGINS)
    for kind, expected in BUILTIN_NAMES.items():
        assert names(plugins, kind) == expected
    assert plugins.warnings == []


@pytest.mark.parametrize("value, loaded", [
    ("fake-alpha", {"alpha_algo"}),
    ("fake_alpha", {"alpha_algo"}),           # _ matches -
    (" FAKE.Alpha , ", {"alpha_algo"}),      # case, dots and spaces are normalised
    ("fake-beta", {"beta_algo"}),            # - matches the _ of the dist's own spelling
    ("fake_beta,fake-alpha", {"alpha_algo", "beta_algo"}),
])
def test_env_var_selects_distributions_by_normalised_name(two_dists, monkeypatch, value, loaded):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, value)
    plugins = two_dists.load()
    assert names(plugins, "algorithms") == {"erm"} | loaded
    assert plugins.warnings == []
    skipped = {"alpha", "beta"} - {n.split("_")[0] for n in loaded}
    assert not skipped & set(plugins.records)


@pytest.mark.parametrize("missing", ["no-such-dist", "pytest"])  # pytest is installed but provides no plugin
def test_env_var_naming_a_dist_that_provides_nothing_warns(two_dists, monkeypatch, missing):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, f"fake-alpha,{missing}")
    plugins = two_dists.load()
    assert names(plugins, "algorithms") == {"erm", "alpha_algo"}
    assert len(plugins.warnings) == 1
    assert LOAD_PLUGINS_ENV in plugins.warnings[0] and repr(missing) in plugins.warnings[0]


# --- failures are recorded per plugin, the rest keeps working ----------------------------------------

def test_a_plugin_that_fails_to_import_is_recorded_and_builtins_still_work(fake_site, monkeypatch):
    broken = "import oodbench_no_such_module_xyz\n"
    fake_site.add_dist("oodbench-broken", {"broken": "fake_broken_mod"}, {"fake_broken_mod": broken}, version="0.9")
    fake_site.add_dist("oodbench-good", {"good": "fake_good_mod"}, {"fake_good_mod": algorithm_module("good_algo")})
    fake_site.add_dist("oodbench-gone", {"gone": "fake_module_that_is_not_there"})
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "oodbench-broken,oodbench-good,oodbench-gone")
    plugins = fake_site.load()

    record = plugins.records["broken"]
    assert not record.loaded
    assert (record.dist, record.version) == ("oodbench-broken", "0.9")
    assert len(record.errors) == 1
    assert record.errors[0].startswith("import failed: ModuleNotFoundError")
    assert "oodbench_no_such_module_xyz" in record.errors[0]
    assert "fake_module_that_is_not_there" in plugins.records["gone"].errors[0]

    assert {r.name for r in plugins.failed()} == {"broken", "gone"}
    assert plugins.registry("algorithms").get("erm").name == "erm"
    assert plugins.registry("algorithms").entry("good_algo").dist == "oodbench-good"
    assert plugins.pm.get_plugin("broken") is None


def test_a_misspelt_hook_is_rejected_by_check_pending_and_recorded(fake_site):
    source = """
        from oodbench import hookimpl
        from oodbench.api import Algorithm

        class Typo(Algorithm):
            name = "typo_algo"

        @hookimpl
        def oodbench_register_algoritms(register):
            register(Typo)

        @hookimpl
        def oodbench_register_datasets(register):
            raise AssertionError("a rejected plugin must not be called")
    """
    fake_site.add_dist("fake-misspelt", {"misspelt": "fake_misspelt_mod"}, {"fake_misspelt_mod": source})
    fake_site.add_dist("fake-zlater", {"zlater": "fake_zlater_mod"}, {"fake_zlater_mod": algorithm_module("later")})
    plugins = fake_site.load()

    record = plugins.records["misspelt"]
    assert not record.loaded and record.dist == "fake-misspelt"
    assert len(record.errors) == 1
    assert "PluginValidationError" in record.errors[0] and "oodbench_register_algoritms" in record.errors[0]
    assert plugins.pm.get_plugin("misspelt") is None
    plugins.pm.check_pending()  # nothing unknown is left registered
    assert "typo_algo" not in plugins.registry("algorithms")
    assert names(plugins, "datasets") >= {"colored_mnist"}
    # a plugin loaded after the rejected one is unaffected
    assert plugins.records["zlater"].loaded and "later" in plugins.registry("algorithms")


def test_a_hookimpl_with_an_argument_not_in_the_spec_is_rejected(fake_site):
    source = """
        from oodbench import hookimpl

        @hookimpl
        def oodbench_register_algorithms(register, device):
            raise AssertionError("a rejected plugin must not be called")
    """
    fake_site.add_dist("fake-badarg", {"badarg": "fake_badarg_mod"}, {"fake_badarg_mod": source})
    plugins = fake_site.load()
    record = plugins.records["badarg"]
    assert not record.loaded and record.dist == "fake-badarg"
    assert "device" in record.errors[0] and "PluginValidationError" in record.errors[0]
    assert "\n" not in record.errors[0]  # shown in a table row and in a one-line CLI warning
    assert plugins.pm.get_plugin("badarg") is None
    assert names(plugins, "algorithms") >= {"erm"}


def test_registering_a_taken_name_names_both_dists_and_the_first_stays(fake_site, monkeypatch):
    fake_site.add_dist("fake-dup", {"dup": "fake_dup_mod"}, {"fake_dup_mod": algorithm_module("erm", "dup_extra")})
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "fake-dup")
    plugins = fake_site.load()
    builtin_erm = importlib.import_module("oodbench.builtin.erm").ERM

    entry = plugins.registry("algorithms").entry("erm")
    assert entry.obj is builtin_erm and entry.dist == "oodbench"
    # the whole registration of the offending plugin is discarded, not just the clash
    assert "dup_extra" not in plugins.registry("algorithms")
    record = plugins.records["dup"]
    assert not record.loaded
    (error,) = record.errors
    assert error.startswith("oodbench_register_algorithms: DuplicateNameError")
    assert "'erm'" in error and "fake-dup" in error and "oodbench" in error.replace("fake-dup", "")
    assert [r.name for r in plugins.failed()] == ["dup"]


def test_two_third_party_dists_registering_one_name(fake_site, monkeypatch):
    fake_site.add_dist("fake-first", {"first": "fake_first_mod"}, {"fake_first_mod": algorithm_module("shared")})
    fake_site.add_dist("fake-second", {"second": "fake_second_mod"}, {"fake_second_mod": algorithm_module("shared")})
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "fake-first,fake-second")
    plugins = fake_site.load()
    assert plugins.registry("algorithms").entry("shared").dist == "fake-first"
    (error,) = plugins.records["second"].errors
    assert "fake-first" in error and "fake-second" in error
    assert plugins.records["first"].loaded


def test_two_dists_with_one_entry_point_name(fake_site, monkeypatch):
    fake_site.add_dist("fake-one", {"samename": "fake_one_mod"}, {"fake_one_mod": algorithm_module("one_algo")})
    fake_site.add_dist("fake-two", {"samename": "fake_two_mod"}, {"fake_two_mod": algorithm_module("two_algo")})
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "fake-one,fake-two")
    plugins = fake_site.load()
    assert plugins.records["samename"].dist == "fake-one" and plugins.records["samename"].loaded
    clash = plugins.records["fake-two:samename"]
    assert not clash.loaded and "fake-one" in clash.errors[0]
    assert names(plugins, "algorithms") == {"erm", "one_algo"}


def test_a_raising_register_hook_is_recorded_and_the_rest_of_the_kind_collects(fake_site, monkeypatch):
    fake_site.add_dist("fake-boom", {"boom": "fake_boom_mod"},
                       {"fake_boom_mod": algorithm_module("partial_algo", raise_after="boom in register")})
    fake_site.add_dist("fake-fine", {"fine": "fake_fine_mod"}, {"fake_fine_mod": algorithm_module("fine_algo")})
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "fake-boom,fake-fine")
    plugins = fake_site.load()

    assert names(plugins, "algorithms") == {"erm", "fine_algo"}  # partial_algo was registered, then discarded
    record = plugins.records["boom"]
    assert not record.loaded
    assert record.errors == ["oodbench_register_algorithms: RuntimeError: boom in register"]
    # collecting again (after add/remove) must not repeat the error
    temp = PluginRecord("tests-temp", "tests", "0", "tests")
    plugins.add(object(), temp)
    plugins.remove("tests-temp")
    assert names(plugins, "algorithms") == {"erm", "fine_algo"}
    assert record.errors == ["oodbench_register_algorithms: RuntimeError: boom in register"]


def test_a_registered_object_without_a_name_is_recorded(fake_site, monkeypatch):
    source = """
        from oodbench import hookimpl

        @hookimpl
        def oodbench_register_targets(register):
            register(object())
    """
    fake_site.add_dist("fake-noname", {"noname": "fake_noname_mod"}, {"fake_noname_mod": source})
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "fake-noname")
    plugins = fake_site.load()
    assert [r.name for r in plugins.failed()] == ["noname"]
    (error,) = plugins.records["noname"].errors
    assert "has no name" in error and "fake-noname" in error
    assert names(plugins, "targets") >= {"float"}


def test_implementations_taking_a_subset_of_the_arguments_are_called(fake_site, monkeypatch):
    source = """
        from oodbench import hookimpl

        CALLS = []

        @hookimpl
        def oodbench_register_algorithms():
            CALLS.append("algorithms")

        class Registrar:
            @hookimpl
            def oodbench_register_targets(self):
                CALLS.append("targets")

        @hookimpl
        def oodbench_register_backbones(register):
            CALLS.append("backbones")
    """
    fake_site.add_dist("fake-subset", {"subset": "fake_subset_mod"}, {"fake_subset_mod": source})
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "fake-subset")
    plugins = fake_site.load()
    module = importlib.import_module("fake_subset_mod")
    plugins.add(module.Registrar(), PluginRecord("subset-method", "fake-subset", "1.0.0", "tests"))
    for kind in KINDS:
        assert names(plugins, kind) == BUILTIN_NAMES[kind]
    assert sorted(module.CALLS) == ["algorithms", "backbones", "targets"]
    assert plugins.failed() == []
    assert plugins.records["subset"].hooks == ["oodbench_register_algorithms", "oodbench_register_backbones"]


# --- the temporary plugin pattern (tests add a plugin for one test) ----------------------------------

class TempAlgo(Algorithm):
    """A test-only algorithm."""

    name = "temp_algo"
    defaults = {"lr": 0.1}


class TempPlugin:
    @hookimpl
    def oodbench_register_algorithms(self, register):
        register(TempAlgo)


def test_temporary_plugin_add_and_remove_does_not_leak(fake_site):
    plugins = fake_site.load()
    before = {kind: names(plugins, kind) for kind in KINDS}
    records_before = set(plugins.records)
    record = plugins.add(TempPlugin(), PluginRecord("temp", "tests-temp", "0.1", "tests"))
    try:
        assert record.loaded and record.hooks == ["oodbench_register_algorithms"]
        assert plugins.registry("algorithms").get("temp_algo") is TempAlgo
        assert plugins.dist_of("algorithms", "temp_algo") == ("tests-temp", "0.1")
    finally:
        plugins.remove("temp")
    assert get_plugins() is plugins
    assert {kind: names(plugins, kind) for kind in KINDS} == before
    assert set(plugins.records) == records_before
    assert plugins.pm.get_plugin("temp") is None
    # it can be added again under the same name
    plugins.add(TempPlugin(), PluginRecord("temp", "tests-temp", "0.1", "tests"))
    try:
        assert "temp_algo" in plugins.registry("algorithms")
    finally:
        plugins.remove("temp")
    assert "temp_algo" not in plugins.registry("algorithms")


def test_adding_under_a_taken_name_is_refused_and_leaves_the_holder_alone(monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    plugins = load_plugins()
    with pytest.raises(ValueError, match=r"oodbench\.builtin\.erm.*already taken by oodbench"):
        plugins.add(TempPlugin(), PluginRecord("oodbench.builtin.erm", "tests", "0", "tests"))
    assert plugins.records["oodbench.builtin.erm"].dist == "oodbench"
    assert plugins.records["oodbench.builtin.erm"].loaded
    assert plugins.registry("algorithms").names() == ["erm"]


def test_a_temporary_plugin_with_a_bad_hook_is_recorded_not_registered(monkeypatch):
    class Misspelt:
        @hookimpl
        def oodbench_register_backbone(self, register):
            raise AssertionError("never called")

    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    plugins = load_plugins()
    record = plugins.add(Misspelt(), PluginRecord("misspelt", "tests", "0", "tests"))
    assert not record.loaded and "oodbench_register_backbone" in record.errors[0]
    assert plugins.pm.get_plugin("misspelt") is None
    plugins.pm.check_pending()
    assert names(plugins, "backbones") == BUILTIN_NAMES["backbones"]
    plugins.remove("misspelt")
    assert "misspelt" not in plugins.records


def test_registry_of_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown plugin kind 'metrics'"):
        load_plugins().registry("metrics")
