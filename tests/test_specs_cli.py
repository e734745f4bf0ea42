"""Dataset specs through the real ``oodbench`` command: a user's spec directory, a broken spec, a preview.

The processes run concurrently (each spends seconds importing torch). They
get their own ``OODBENCH_DATA`` whose ``mnist`` folder links to the real
MNIST cache, so building a dataset writes its cache into the temp dir only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from oodbench.data.catalog import PATH_ENV
from oodbench.data.mnist import data_home, load_mnist
from oodbench.plugins import LOAD_PLUGINS_ENV

OODBENCH = [sys.executable, "-m", "oodbench.cli"]
TIMEOUT = 300

USER_SPEC = """\
description = "a user's spec: orange vs purple digits on black, 90 % tied to the label"
images = "test"
layout = "rgb"

[label]
threshold = 5

[attribute]
name = "color"
values = ["orange", "purple"]
render = "digit"

[[environments]]
name = "train"
role = "train"
stop = 800
attribute = { relation = "label", flip = 0.1 }

[[environments]]
name = "test"
role = "test"
start = 800
stop = 1_000
attribute = { relation = "label", flip = 0.9 }
"""

BROKEN_SPEC = USER_SPEC.replace('values = ["orange", "purple"]', 'values = ["orange", "purpel"]')


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """list, preview of the user spec, preview of the broken one: run once, side by side."""
    load_mnist()  # the real MNIST cache exists before the processes link to it
    root = tmp_path_factory.mktemp("spec_cli")
    specs = root / "user specs"
    specs.mkdir()
    (specs / "orange_purple.toml").write_text(USER_SPEC)
    (specs / "broken.toml").write_text(BROKEN_SPEC)
    home = root / "data"
    home.mkdir()
    (home / "mnist").symlink_to(data_home() / "mnist", target_is_directory=True)
    env = dict(os.environ, OODBENCH_DATA=str(home), **{PATH_ENV: str(specs)})
    env.pop(LOAD_PLUGINS_ENV, None)
    commands = {
        "list": ["list", "datasets"],
        "preview": ["data", "preview", "orange_purple", "--out", str(root / "user.png")],
        "broken": ["data", "preview", "broken", "--out", str(root / "broken.png")],
    }

    def run(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([*OODBENCH, *args], env=env, cwd=root, capture_output=True, text=True, timeout=TIMEOUT)

    with ThreadPoolExecutor(len(commands)) as pool:
        done = dict(zip(commands, pool.map(run, commands.values())))
    return {name: (result, root) for name, result in done.items()}


def test_a_user_spec_on_the_path_is_listed_beside_the_shipped_ones(results):
    result, root = results["list"]
    assert result.returncode == 0, result.stderr
    for name in ("orange_purple", "colored_mnist", "colored_mnist_irm", "colored_mnist_irm_gray",
                 "colored_mnist_guard", "colored_mnist_domainbed", "digit_color_shift", "background_shift"):
        assert re.search(rf"^{name} ", result.stdout, re.M), name
    assert re.search(r"^broken .*UNUSABLE: .*broken\.toml: field 'attribute\.values\[1\]'", result.stdout, re.M)
    assert result.stderr == ""


def test_a_user_spec_previews_and_is_cached_in_the_data_home(results):
    result, root = results["preview"]
    assert result.returncode == 0, result.stderr
    assert (root / "user.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (root / "data" / "datasets").iterdir() if p.name.startswith("orange_purple-")]


def test_using_the_broken_spec_exits_2_with_one_line(results):
    result, root = results["broken"]
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line == (f"oodbench: error: {root / 'user specs' / 'broken.toml'}: "
                    "field 'attribute.values[1]' is \"purpel\" "
                    "(allowed: 'black', 'white', 'red', 'green', 'blue', 'yellow', 'cyan', 'magenta', 'orange', "
                    "'purple', 'gray', 'random')")
    assert not (root / "broken.png").exists()
