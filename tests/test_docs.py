"""Docs that cannot rot: every hook spec documented with its exact signature, every relative link resolving."""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

import pytest

from oodbench import hookspec, hookspecs

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DOC = ROOT / "docs" / "writing-plugins.md"
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def hook_signatures(module: types.ModuleType) -> dict[str, str]:
    """``name -> name(args)`` of every ``@hookspec`` function in ``module``, as ``inspect`` renders it."""
    return {name: f"{name}{inspect.signature(func)}" for name, func in inspect.getmembers(module, inspect.isfunction)
            if hasattr(func, "oodbench_spec")}


def headings(markdown: str) -> list[str]:
    """Heading texts outside code blocks, without ``#`` marks or backticks."""
    prose = FENCE.sub("", markdown)
    return [line.lstrip("#").strip().replace("`", "") for line in prose.splitlines() if re.match(r"#{1,6} ", line)]


def undocumented(signatures: dict[str, str], markdown: str) -> list[str]:
    """Signatures with no heading of exactly that text."""
    documented = set(headings(markdown))
    return sorted(sig for sig in signatures.values() if sig not in documented)


def test_every_hook_spec_has_a_heading_with_its_exact_signature():
    signatures = hook_signatures(hookspecs)
    assert len(signatures) >= 4
    assert undocumented(signatures, PLUGIN_DOC.read_text()) == []


def test_no_heading_documents_a_hook_that_does_not_exist():
    signatures = set(hook_signatures(hookspecs).values())
    hook_headings = [h for h in headings(PLUGIN_DOC.read_text()) if h.startswith("oodbench_")]
    assert hook_headings and set(hook_headings) <= signatures


def one_argument(register):
    """A spec body: only its signature matters."""


def two_arguments(register, cache):
    """A spec body: only its signature matters."""


def fake_specs(**functions) -> types.ModuleType:
    """A module of hook specs, each function under the given name."""
    module = types.ModuleType("fake_hookspecs")
    for name, func in functions.items():
        setattr(module, name, hookspec(func))
    return module


@pytest.mark.parametrize("specs, missing", [
    ({"oodbench_register_metrics": one_argument}, ["oodbench_register_metrics(register)"]),  # a new hook
    ({"oodbench_register_datasets": two_arguments}, ["oodbench_register_datasets(register, cache)"]),  # changed
    ({"oodbench_register_datasets": one_argument}, []),
])
def test_the_check_fails_for_a_new_or_changed_hook(specs, missing):
    assert undocumented(hook_signatures(fake_specs(**specs)), PLUGIN_DOC.read_text()) == missing


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


DOCS = [ROOT / "README.md", ROOT / "plugins" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(doc):
    for target in LINK.findall(FENCE.sub("", doc.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        assert linked.exists(), f"{doc.relative_to(ROOT)}: broken link {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in {slug(h) for h in headings(linked.read_text())}, f"{doc.relative_to(ROOT)}: {target}"


def test_the_readme_points_to_the_scaffold_and_the_plugin_guide():
    readme = (ROOT / "README.md").read_text()
    assert "oodbench new-plugin" in readme and "(docs/writing-plugins.md)" in readme
    assert not (ROOT / "docs" / "writing-a-plugin.md").exists()
