"""``oodbench plugins --requirements [RUN_DIR]``: pinned lines for the installed plugin set or a run's."""

from __future__ import annotations

import pytest
from test_plugins import algorithm_module

from oodbench import __version__
from oodbench.cli import main
from oodbench.plugins import LOAD_PLUGINS_ENV
from oodbench.requirements import installed_requirements, run_requirements
from oodbench.store import Store


def test_installed_pins_loaded_distributions_and_comments_on_ones_that_did_not_load(fake_site, monkeypatch):
    fake_site.add_dist("Fake_Zeta", {"zeta": "fake_zeta_mod"}, {"fake_zeta_mod": algorithm_module("zeta")}, "2.0")
    fake_site.add_dist("fake-alpha", {"alpha": "fake_alpha_req"}, {"fake_alpha_req": algorithm_module("alpha")}, "1.1")
    fake_site.add_dist("fake-broken", {"broken": "fake_no_such_module_req"}, version="0.9")
    fake_site.add_dist("fake-half", {"half_ok": "fake_half_ok", "half_bad": "fake_half_missing"},
                       {"fake_half_ok": algorithm_module("half_algo")}, version="3.0")
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "fake-zeta,fake-alpha,fake-broken,fake-half")
    lines = installed_requirements(fake_site.load())
    assert lines == [f"oodbench=={__version__}", "fake-alpha==1.1", "fake-half==3.0", "Fake_Zeta==2.0",
                     "# fake-broken==0.9: installed, but none of its plugins loaded (see `oodbench plugins`)"]


def test_the_cli_prints_the_installed_pins(fake_site, monkeypatch, capsys):
    fake_site.add_dist("fake-alpha", {"alpha": "fake_alpha_cli"}, {"fake_alpha_cli": algorithm_module("a1")}, "1.1")
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "fake-alpha")
    fake_site.load()
    assert main(["plugins", "--requirements"]) == 0
    assert capsys.readouterr().out == f"oodbench=={__version__}\nfake-alpha==1.1\n"


def record(store: Store, cell: str, kind: str, name: str, dist: str, version: str) -> None:
    with store.db:
        store.db.execute("INSERT INTO plugins VALUES (?, ?, ?, ?, ?)", (cell, kind, name, dist, version))


def test_a_run_pins_what_its_cells_recorded(tmp_path, capsys):
    with Store.in_dir(tmp_path) as store:
        for cell in ("c1", "c2"):
            record(store, cell, "dataset", "colored_mnist", "oodbench", "0.1.0")
            record(store, cell, "backbone", "mlp", "oodbench", "0.1.0")
        record(store, "c1", "algorithm", "irm", "oodbench-methods", "0.1.0")
        record(store, "c2", "algorithm", "mine", "oodbench-mine", "1.2.3")
    assert run_requirements(tmp_path) == ["oodbench==0.1.0", "oodbench-methods==0.1.0", "oodbench-mine==1.2.3"]
    assert main(["plugins", "--requirements", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == run_requirements(tmp_path)


def test_a_run_that_met_two_versions_of_a_distribution_says_so(tmp_path):
    with Store.in_dir(tmp_path) as store:
        record(store, "c1", "algorithm", "mine", "oodbench-mine", "1.2.3")
        record(store, "c2", "algorithm", "mine", "oodbench-mine", "1.3.0")
    assert run_requirements(tmp_path) == ["oodbench-mine==1.2.3", "oodbench-mine==1.3.0",
                                          "# oodbench-mine: cells ran with 2 versions; keep one line"]


@pytest.mark.parametrize("setup, pattern", [
    (lambda d: None, "not a run directory"),
    (lambda d: Store.in_dir(d).close(), "no cell has finished yet"),
])
def test_a_run_dir_without_recorded_plugins_is_one_line_exit_2(tmp_path, capsys, setup, pattern):
    setup(tmp_path)
    assert main(["plugins", "--requirements", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and pattern in err and str(tmp_path) in err


def test_json_and_requirements_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plugins", "--json", "--requirements"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
