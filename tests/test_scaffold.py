"""``oodbench new-plugin``: what it writes, what it refuses, and that each generated project passes its own
tests once installed with ``pip install -e`` (into a throwaway environment, uninstalled afterwards)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
from pip_env import LayeredEnv

from oodbench import __version__
from oodbench.cli import main
from oodbench.plugins import LOAD_PLUGINS_ENV, reset_plugins
from oodbench.scaffold import KINDS, Names, new_plugin

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "oodbench" / "templates"


def expected_files(names: Names, kind: str) -> set[str]:
    return {"pyproject.toml", "README.md", ".gitignore", f"{names.package}/__init__.py", f"{names.package}/{kind}.py",
            f"tests/test_{kind}.py", "tests/test_cli.py"}


@pytest.fixture
def builtins_only(monkeypatch):
    """Only oodbench's built-ins count as taken names, whatever else is installed here."""
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    reset_plugins()
    yield
    reset_plugins()


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_generates_a_complete_project(tmp_path, builtins_only, kind):
    names = Names(f"my_{kind}")
    project = new_plugin(names.name, kind, tmp_path)
    assert project == tmp_path / f"oodbench-my-{kind}"
    files = {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}
    assert files == expected_files(names, kind)
    for name in files:
        text = (project / name).read_text()
        assert "${" not in text, name
        if name.endswith(".py"):
            ast.parse(text, filename=name)  # valid Python

    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == f"oodbench-my-{kind}"
    assert pyproject["project"]["entry-points"]["oodbench"] == {names.name: f"{names.package}.{kind}"}
    assert f"oodbench>={__version__}" in pyproject["project"]["dependencies"]
    assert pyproject["tool"]["setuptools"]["packages"] == [names.package]

    module = (project / names.package / f"{kind}.py").read_text()
    assert f'name = "{names.name}"' in module and f"def oodbench_register_{KINDS[kind].plural}(register)" in module
    assert f"class {names.class_name}" in module
    cli_test = (project / "tests" / "test_cli.py").read_text()
    assert f'"{names.name}"' in cli_test and "@pytest.mark.slow" in cli_test
    readme = (project / "README.md").read_text()
    assert "docs/writing-plugins.md" in readme and f"pip install {names.dist}" in readme


def test_names_are_spelt_consistently():
    names = Names("group_balanced2")
    assert (names.dist, names.package, names.class_name) == (
        "oodbench-group-balanced2", "oodbench_group_balanced2", "GroupBalanced2")


BAD = {
    "uppercase": (["new-plugin", "MyMethod"], [r"NAME 'MyMethod'", r"lowercase", r"e\.g\. my_method"]),
    "hyphen": (["new-plugin", "my-method"], [r"NAME 'my-method'", r"underscores"]),
    "leading-digit": (["new-plugin", "2fast"], [r"NAME '2fast'", r"starting with a letter"]),
    "double-underscore": (["new-plugin", "a__b"], [r"NAME 'a__b'"]),
    "keyword": (["new-plugin", "lambda"], [r"NAME 'lambda'"]),
    "too-long": (["new-plugin", "a" * 41], [r"at most 40"]),
    "taken-algorithm": (["new-plugin", "erm"], [r"NAME 'erm'", r"already a registered algorithm", r"oodbench",
                                                r"taken: erm"]),
    "taken-backbone": (["new-plugin", "cnn", "--kind", "backbone"], [r"registered backbone", r"taken: cnn, lenet, mlp"]),
    "installed-distribution": (["new-plugin", "methods"], [r"NAME 'methods'", r"oodbench-methods \S+ is already in"]),
    "dir-is-a-file": (["new-plugin", "fine", "--dir", "{tmp}/file"], [r"--dir .*file", r"not a directory"]),
    "existing-project": (["new-plugin", "fine", "--dir", "{tmp}"], [r"oodbench-fine already exists",
                                                                    r"another NAME or --dir"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_exit_2(tmp_path, builtins_only, capsys, case):
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "oodbench-fine").mkdir()
    (tmp_path / "oodbench-fine" / "mine.txt").write_text("keep me")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args, patterns = BAD[case]
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.endswith("\n") and len(err.splitlines()) == 1, err
    assert err.startswith("oodbench: error: new-plugin")
    for pattern in patterns:
        assert re.search(pattern, err), (pattern, err)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_an_unknown_kind_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["new-plugin", "fine", "--kind", "metric"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "'metric'" in err and "algorithm" in err and "dataset" in err


def test_the_cli_prints_what_it_created_and_what_to_do_next(tmp_path, builtins_only, capsys):
    assert main(["new-plugin", "shiny", "--kind", "target", "--dir", str(tmp_path / "new" / "parent")]) == 0
    out = capsys.readouterr().out
    project = tmp_path / "new" / "parent" / "oodbench-shiny"
    assert f"created {project}" in out and "the target 'shiny'" in out
    assert "  oodbench_shiny/target.py" in out.splitlines()
    assert f"cd {project} && pip install -e '.[test]' && pytest" in out


def test_every_template_ships_as_package_data():
    """The templates are read with importlib.resources; a wheel lacking one would break new-plugin."""
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {p for pattern in package_data["oodbench"] for p in (ROOT / "oodbench").glob(pattern)}
    templates = {p for p in TEMPLATES.rglob("*") if p.is_file()}
    assert templates and templates <= shipped
    assert {p.parent.name for p in templates} == {"common", *KINDS}


@pytest.fixture(scope="module")
def installed_projects(tmp_path_factory):
    """One throwaway environment holding a generated project of every kind, installed with one ``pip install -e``
    (a venv and a pip run per kind would cost more than the projects' own tests), uninstalled afterwards."""
    root = tmp_path_factory.mktemp("scaffolded")
    env = LayeredEnv(root / "venv")
    projects = {kind: new_plugin(f"scaffolded_{kind}", kind, root) for kind in KINDS}  # the CLI's path: tested above
    env.pip_install(*(f"{project}[test]" for project in projects.values()), editable=True)
    yield env, projects
    dists = [Names(f"scaffolded_{kind}").dist for kind in KINDS]
    env.pip_uninstall(*dists)
    assert [env.installed(dist) for dist in dists] == [None] * len(dists)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_generated_project_passes_its_own_tests_after_pip_install_e(installed_projects, tmp_path, kind):
    env, projects = installed_projects
    names = Names(f"scaffolded_{kind}")
    assert env.installed(names.dist) == "0.1.0"
    result = env.run("-m", "pytest", "-rA", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "basetemp"),
                     cwd=projects[kind])
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", summary) and not re.search(r"failed|error|skipped|deselected", summary)
    for test in ("test_the_plugin_is_installed_and_loads", f"test_the_{kind}_is_registered_under_its_name",
                 "test_one_epoch_through_the_cli"):
        assert f"PASSED tests/test_cli.py::{test}" in result.stdout
    assert f"PASSED tests/test_{kind}.py::" in result.stdout
