"""``oodbench new-plugin``: a complete plugin distribution from the templates in ``oodbench/templates``.

A generated project is what a stranger publishes: a pyproject with one entry
point in the ``oodbench`` group, a working example of one plugin kind, a
README and a pytest suite that checks registration and runs one epoch
through the CLI. Templates are ``string.Template`` files (``${name}``).
"""

from __future__ import annotations

import importlib.metadata
import json
import keyword
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template

from oodbench import __version__
from oodbench.errors import UsageError
from oodbench.plugins import get_plugins

NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
MAX_NAME = 40
FAST_RUN = ("--set", "batch_size=512", "--set", "train_eval_size=1000")
"""Training options that keep the generated 1-epoch CLI test to seconds on a CPU."""


@dataclass(frozen=True)
class Kind:
    """One kind of plugin: its registry's name and the arguments that run it for one epoch in the generated test."""

    plural: str
    run: tuple[str, ...]  # ``{name}`` stands for the plugin's registered name

    def run_args(self, name: str) -> list[str]:
        return [arg.replace("{name}", name) for arg in (*self.run, *FAST_RUN)]


KINDS = {
    "algorithm": Kind("algorithms", ("-d", "colored_mnist", "-b", "mlp", "-a", "{name}", "-t", "float",
                                     "--set", "mlp.hidden=64")),
    "backbone": Kind("backbones", ("-d", "colored_mnist", "-b", "{name}", "-a", "erm", "-t", "float")),
    "target": Kind("targets", ("-d", "colored_mnist", "-b", "mlp", "-a", "erm", "-t", "{name}", "-t", "float",
                               "--set", "mlp.hidden=64")),
    "dataset": Kind("datasets", ("-d", "{name}", "-b", "mlp", "-a", "erm", "-t", "float", "--set", "mlp.hidden=64")),
}

# template (relative to oodbench/templates) -> file in the project; {package} and {kind} are filled in
LAYOUT = {
    "common/pyproject.toml.tmpl": "pyproject.toml",
    "common/README.md.tmpl": "README.md",
    "common/gitignore.tmpl": ".gitignore",
    "common/__init__.py.tmpl": "{package}/__init__.py",
    "{kind}/module.py.tmpl": "{package}/{kind}.py",
    "{kind}/test_module.py.tmpl": "tests/test_{kind}.py",
    "common/test_cli.py.tmpl": "tests/test_cli.py",
}


@dataclass(frozen=True)
class Names:
    """Every spelling of one plugin name: registered and entry-point name, distribution, package, class."""

    name: str

    @property
    def dist(self) -> str:
        return "oodbench-" + self.name.replace("_", "-")

    @property
    def package(self) -> str:
        return "oodbench_" + self.name

    @property
    def class_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))


def check_name(name: str, kind: str) -> Names:
    """A name usable as a Python identifier, a distribution suffix and a free registry name, or a UsageError."""
    if len(name) > MAX_NAME or not NAME_PATTERN.fullmatch(name) or keyword.iskeyword(name):
        raise UsageError(f"new-plugin NAME {name!r}: expected lowercase letters and digits, words joined by single "
                         f"underscores, starting with a letter, at most {MAX_NAME} characters (e.g. my_method)")
    registry = get_plugins().registry(KINDS[kind].plural)
    if name in registry:
        raise UsageError(f"new-plugin NAME {name!r}: already a registered {kind} (from {registry.entry(name).dist}); "
                         f"choose another (taken: {', '.join(registry.names())})")
    names = Names(name)
    try:
        installed = importlib.metadata.version(names.dist)
    except importlib.metadata.PackageNotFoundError:
        return names
    raise UsageError(f"new-plugin NAME {name!r}: the distribution {names.dist} {installed} is already installed; "
                     "choose another NAME")


def _option_list(args: list[str]) -> str:
    """A Python list literal of ``--option value`` pairs, one pair a line."""
    pairs = [", ".join(json.dumps(arg) for arg in args[i:i + 2]) for i in range(0, len(args), 2)]
    return "[\n" + "".join(f"    {pair},\n" for pair in pairs) + "]"


def render(template: str, names: Names, kind: str) -> str:
    """One template filled in; an unknown ``${...}`` in a template is a bug, so it raises."""
    text = files("oodbench").joinpath("templates", template).read_text(encoding="utf-8")
    run_args = KINDS[kind].run_args(names.name)
    return Template(text).substitute(
        name=names.name, dist=names.dist, package=names.package, class_name=names.class_name, kind=kind,
        kinds=KINDS[kind].plural, oodbench_version=__version__, run_args=_option_list(run_args),
        run_command=" ".join(run_args))


def new_plugin(name: str, kind: str, parent: Path) -> Path:
    """Write the project ``parent/oodbench-NAME`` and return its path; refuses to touch an existing one."""
    if kind not in KINDS:
        raise UsageError(f"new-plugin --kind {kind!r}: unknown (allowed: {', '.join(KINDS)})")
    names = check_name(name, kind)
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"new-plugin --dir {parent}: not a directory")
    project = parent / names.dist
    if project.exists():
        raise UsageError(f"new-plugin: {project} already exists; choose another NAME or --dir")
    rendered = {dest.format(package=names.package, kind=kind): render(template.format(kind=kind), names, kind)
                for template, dest in LAYOUT.items()}
    for dest, text in rendered.items():
        path = project / dest
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"new-plugin --dir {parent}: cannot write {path}: {exc.strerror}") from None
    return project


def generated_files(project: Path) -> list[str]:
    """The project's files, relative and sorted, for the CLI's summary."""
    return sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
