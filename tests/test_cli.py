"""The ``oodbench`` command in fresh interpreters: plugin listings, broken plugins, and bad input (exit 2).

Nothing here trains: every error must surface before training starts. As a
guard, every run gets its own ``--out`` (checked to hold no store afterwards)
and an empty ``OODBENCH_DATA``, and each interpreter has a timeout. The bad-input
cases share one interpreter, each with its own environment, directory and streams.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli_support import FIRST_PARTY, CliCall, run_in_one_interpreter, subprocess_env
from oodbench.data.mnist import data_home, load_mnist
from oodbench.plugins import LOAD_PLUGINS_ENV
from oodbench.store import STORE_NAME, Store

CLI = [sys.executable, "-m", "oodbench.cli"]
TIMEOUT = 180


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def base_env(data_home: Path, **overrides: str | None) -> dict[str, str]:
    return subprocess_env(**({"OODBENCH_DATA": str(data_home)} | overrides))


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert stderr.endswith("\n")
    return lines[0]


BROKEN_PLUGIN = "import oodbench_no_such_dependency_abc\n"
GOOD_PLUGIN = '''
from oodbench import hookimpl
from oodbench.api import Algorithm


class Good(Algorithm):
    """A third-party algorithm installed next to a broken one."""

    name = "good_algo"
    defaults = {"lr": 0.01}


@hookimpl
def oodbench_register_algorithms(register):
    register(Good)
'''


@pytest.fixture
def broken_site(fake_site):
    fake_site.add_dist("oodbench-broken", {"broken": "fake_cli_broken"}, {"fake_cli_broken": BROKEN_PLUGIN},
                       version="0.3.1")
    fake_site.add_dist("oodbench-good", {"good": "fake_cli_good"}, {"fake_cli_good": GOOD_PLUGIN}, version="1.4.0")
    return fake_site


def site_env(site, tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    return site.env(OODBENCH_DATA=str(tmp_path / "data"), **overrides)


def test_python_dash_m_and_the_script_agree(tmp_path):
    env = base_env(tmp_path / "data")
    version = run_cli(["--version"], env, tmp_path)
    assert version.returncode == 0 and version.stdout.strip().startswith("oodbench ")
    script = Path(sys.executable).parent / "oodbench"
    if script.exists():
        direct = subprocess.run([str(script), "--version"], env=env, cwd=tmp_path, capture_output=True, text=True,
                                timeout=TIMEOUT)
        assert direct.returncode == 0 and direct.stdout == version.stdout


def test_list_algorithms_json_lists_erm(tmp_path):
    result = run_cli(["list", "algorithms", "--json"], base_env(tmp_path / "data", **{LOAD_PLUGINS_ENV: ""}), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert set(entries) == {"erm"}
    assert entries["erm"]["dist"] == "oodbench"
    assert entries["erm"]["defaults"]["lr"] > 0 and entries["erm"]["requires"] == []


def test_plugins_lists_from_metadata_without_importing_anything(broken_site, tmp_path):
    probe = ("import sys; from oodbench.cli import main; main(['plugins']); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fake_cli_broken', 'fake_cli_good')))")
    result = subprocess.run([sys.executable, "-c", probe], env=site_env(broken_site, tmp_path), cwd=tmp_path,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "[]"  # neither torch nor any plugin module was imported
    rows = {line.split()[0]: line for line in lines[2:] if line.strip()}
    assert "oodbench-broken" in rows["broken"] and "0.3.1" in rows["broken"] and "fake_cli_broken" in rows["broken"]
    assert "oodbench-good" in rows["good"] and "oodbench.builtin.erm" in rows
    assert any("oodbench plugins --check" in line for line in lines)


def test_plugins_check_shows_a_broken_plugin_and_exits_0(broken_site, tmp_path):
    result = run_cli(["plugins", "--check"], site_env(broken_site, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:] if line.strip()}
    assert "oodbench-broken" in rows["broken"] and "0.3.1" in rows["broken"]
    assert "no: import failed: ModuleNotFoundError" in rows["broken"]
    assert "oodbench_no_such_dependency_abc" in rows["broken"]
    assert "oodbench-good" in rows["good"] and "register_algorithms" in rows["good"] and rows["good"].endswith("yes")
    assert rows["oodbench.builtin.erm"].endswith("yes")


def test_plugins_check_json_shows_a_broken_plugin_and_exits_0(broken_site, tmp_path):
    result = run_cli(["plugins", "--check", "--json"], site_env(broken_site, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    records = {r["name"]: r for r in json.loads(result.stdout)}
    broken = records["broken"]
    assert (broken["dist"], broken["version"], broken["loaded"]) == ("oodbench-broken", "0.3.1", False)
    assert broken["target"] == "fake_cli_broken" and broken["hooks"] == []
    (error,) = broken["errors"]
    assert "ModuleNotFoundError" in error and "oodbench_no_such_dependency_abc" in error
    good = records["good"]
    assert good["loaded"] and good["dist"] == "oodbench-good" and good["hooks"] == ["oodbench_register_algorithms"]
    assert records["oodbench.builtin.erm"]["builtin"] and records["oodbench.builtin.erm"]["loaded"]


def test_list_still_works_with_a_broken_plugin_and_warns_on_one_line(broken_site, tmp_path):
    env = site_env(broken_site, tmp_path, **{LOAD_PLUGINS_ENV: "oodbench-broken"})
    result = run_cli(["list", "datasets"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "colored_mnist" in result.stdout
    warning = one_line(result.stderr)
    assert warning.startswith("oodbench: warning:")
    assert "oodbench-broken" in warning and "ModuleNotFoundError" in warning and LOAD_PLUGINS_ENV in warning

    both = site_env(broken_site, tmp_path, **{LOAD_PLUGINS_ENV: "oodbench-broken,oodbench_good"})
    everything = run_cli(["list", "algorithms", "--json"], both, tmp_path)
    assert everything.returncode == 0
    assert "oodbench-broken" in one_line(everything.stderr)
    dists = {e["name"]: e["dist"] for e in json.loads(everything.stdout)}
    assert dists["erm"] == "oodbench" and dists["good_algo"] == "oodbench-good"


def test_empty_load_plugins_hides_the_broken_plugin(broken_site, tmp_path):
    env = site_env(broken_site, tmp_path, **{LOAD_PLUGINS_ENV: ""})
    listing = run_cli(["list", "datasets"], env, tmp_path)
    assert listing.returncode == 0 and listing.stderr == ""
    assert "colored_mnist" in listing.stdout
    plugins = run_cli(["plugins", "--json"], env, tmp_path)
    assert plugins.returncode == 0
    dists = {r["dist"] for r in json.loads(plugins.stdout)}
    assert dists == {"oodbench"}


def test_a_plugin_with_a_multi_line_validation_error_warns_on_one_line(fake_site, tmp_path):
    source = "from oodbench import hookimpl\n\n@hookimpl\ndef oodbench_register_algorithms(register, device):\n    pass\n"
    fake_site.add_dist("oodbench-badarg", {"badarg": "fake_cli_badarg"}, {"fake_cli_badarg": source})
    result = run_cli(["list", "targets"], site_env(fake_site, tmp_path, **{LOAD_PLUGINS_ENV: "oodbench-badarg"}),
                     tmp_path)
    assert result.returncode == 0
    warning = one_line(result.stderr)
    assert "oodbench-badarg" in warning and "device" in warning


# --- bad input: exit 2, one line, no traceback, names the thing and the allowed values ----------------

MATRIX_AXES = 'datasets = ["colored_mnist"]\nbackbones = ["cnn"]\nalgorithms = ["erm"]\ntargets = ["float"]\n'
FILES = {
    "malformed.toml": 'datasets = ["colored_mnist"\n',
    "field.toml": MATRIX_AXES + 'colour = "red"\n',
    "type.toml": MATRIX_AXES + 'seeds = "0"\n',
    "include.toml": MATRIX_AXES + '[[include]]\ndataset = "colored_mnist"\nalgorithm = "erm"\n',
    "hparams.toml": MATRIX_AXES + "[hparams.erm]\nlrr = 1\n",
    "exclude.toml": MATRIX_AXES + '[[exclude]]\nalgorithm = "ermm"\n',
}


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    patterns: tuple[str, ...]  # regexes, each must match the message; {dir} is the case's directory
    out: bool = True  # give the run its own --out, to check that nothing was stored
    load: str = FIRST_PARTY  # OODBENCH_LOAD_PLUGINS for the case


CASES = {
    "unknown-algorithm": Case(("run", "-a", "ermm"),
                              (r"--algorithm", r"'ermm'", r"did you mean 'erm'\?", r"allowed: .*\berm\b")),
    "unknown-dataset": Case(("run", "-d", "fashion"), (r"--dataset", r"'fashion'", r"allowed: .*\bcolored_mnist\b")),
    "unknown-target": Case(("run", "--target", "memristr"), (r"--target", r"'memristr'", r"did you mean 'memristor'\?",
                                                           r"allowed: .*\bfloat\b")),
    "unknown-backbone": Case(("run", "-b", "cnm"), (r"'cnm'", r"did you mean 'cnn'\?", r"allowed: .*\bmlp\b")),
    "unknown-named-matrix": Case(("run", "--matrix", "seed-tabel"), (r"'seed-tabel'", r"named: .*\bquick\b")),
    "missing-matrix-file": Case(("run", "--matrix", "{dir}/absent.toml"), (r"absent\.toml", r"no such file")),
    "malformed-toml": Case(("run", "--matrix", "{dir}/malformed.toml"), (r"malformed\.toml", r"not valid TOML")),
    "unknown-field": Case(("run", "--matrix", "{dir}/field.toml"),
                          (r"field\.toml", r"unknown field 'colour'", r"allowed: .*datasets.*seeds")),
    "wrong-type": Case(("run", "--matrix", "{dir}/type.toml"),
                       (r"type\.toml", r"'seeds'", r"list of integers", r"got '0'")),
    "include-lacking-keys": Case(("run", "--matrix", "{dir}/include.toml"),
                                 (r"include\.toml", r"include\[0\]", r"lacks backbone, target")),
    "unknown-hparam": Case(("run", "--matrix", "{dir}/hparams.toml"),
                           (r"hparams\.toml", r"hparams\.erm\.lrr", r"unknown key 'lrr'", r"allowed: .*\blr\b")),
    "set-without-equals": Case(("run", "--set", "lr"), (r"--set 'lr'", r"KEY=VALUE")),
    "set-unknown-key": Case(("run", "--set", "momentum=0.9"),
                            (r"--set momentum", r"allowed: .*\berm\.lr\b", r"\bbatch_size\b")),
    "set-wrong-type": Case(("run", "--set", "lr=abc"), (r"--set lr", r"expected float", r"'abc'")),
    "set-bool-for-int": Case(("run", "--set", "batch_size=true"), (r"--set batch_size", r"expected int", r"True")),
    "seeds-not-integers": Case(("run", "--seeds", "x"), (r"--seeds", r"'x'", r"integers in \[0, 4294967295\] like 0,1,2")),
    "seeds-overflow": Case(("run", "--seeds", "100000000000000000000"), (r"--seeds", r"4294967295", r"'1000+'")),
    "seeds-negative": Case(("run", "--seeds", "0,-1"), (r"--seeds", r"'0,-1'")),
    "epochs-zero": Case(("run", "--epochs", "0"), (r"--epochs", r"integer in \[1, 1000000\]", r"'0'")),
    "n-hparams-huge": Case(("run", "--n-hparams", "100000"), (r"--n-hparams", r"\[1, 10000\]")),
    "lr-nan": Case(("run", "--set", "lr=nan"), (r"--set lr", r"finite number", r"nan")),
    "lr-inf": Case(("run", "--set", "lr=inf"), (r"--set lr", r"finite number", r"inf")),
    "lr-negative": Case(("run", "--set", "lr=-1"), (r"--set lr", r"-1\.0", r"outside the declared range",
                                                    r"allowed: log-uniform")),
    "batch-size-huge": Case(("run", "--set", "batch_size=1000000000"),
                            (r"--set batch_size", r"1000000000", r"in \[1, 1000000\]")),
    "mlp-hidden-zero": Case(("run", "-b", "mlp", "--set", "mlp.hidden=0"),
                            (r"--set mlp\.hidden", r"outside the declared range")),
    "mlp-depth-negative": Case(("run", "-b", "mlp", "--set", "mlp.depth=-1"),
                               (r"--set mlp\.depth", r"outside the declared range")),
    "mode-not-an-option": Case(("run", "-a", "dann", "--set", 'dann.condition="cdan"'),
                               (r"--set dann\.condition", r"'cdan'", r"one of 'none', 'prediction', 'label'")),
    "exclude-misspelt": Case(("run", "--matrix", "{dir}/exclude.toml"),
                             (r"exclude\.toml", r"exclude\[0\]\.algorithm", r"'ermm'", r"did you mean 'erm'\?")),
    "data-dir-missing": Case(("run", "--data-dir", "/nonexistent"),
                             (r"--data-dir", r"/nonexistent", r"does not exist", r"train-images-idx3-ubyte")),
    "data-dir-without-idx": Case(("run", "--data-dir", "{dir}/empty"),
                                 (r"MNIST directory .*empty", r"has no train-images-idx3-ubyte")),
    "out-is-a-file": Case(("run", "--out", "{dir}/field.toml"), (r"--out", r"field\.toml", r"is a file"), out=False),
    "out-under-a-file": Case(("run", "--out", "{dir}/field.toml/run"),
                             (r"--out", r"cannot create the run directory", r"Not a directory"), out=False),
    "resume-garbled-store": Case(("run", "--resume", "--out", "{dir}/garbled"),
                                 (r"garbled/results\.sqlite", r"not a readable oodbench store"), out=False),
    "resume-zero-byte-store": Case(("run", "--resume", "--out", "{dir}/zerobyte"),
                                   (r"zerobyte/results\.sqlite", r"an empty file, not an oodbench store"), out=False),
    "report-garbled-store": Case(("report", "{dir}/garbled"),
                                 (r"garbled/results\.sqlite", r"not a readable oodbench store"), out=False),
    "report-zero-byte-store": Case(("report", "{dir}/zerobyte"),
                                   (r"zerobyte/results\.sqlite", r"an empty file, not an oodbench store"), out=False),
    "executor-unknown": Case(("run", "--executor", "nope"), (r"--executor", r"'nope'", r"local", r"process")),
    "device-unknown": Case(("run", "--device", "tpu"), (r"--device", r"'tpu'", r"cpu")),
    "report-not-a-run": Case(("report", "{dir}/notrun"), (r"notrun", r"not a run directory", STORE_NAME), out=False),
    "report-bad-format": Case(("report", "{dir}/notrun", "--format", "xml"), (r"--format", r"'xml'", r"markdown"),
                              out=False),
    "list-unknown-kind": Case(("list", "metrics"), (r"'metrics'", r"algorithms"), out=False),
    "data-fetch-missing-dir": Case(("data", "fetch", "--data-dir", "/nonexistent"),
                                   (r"/nonexistent", r"does not exist", r"train-images-idx3-ubyte"), out=False),
    "data-preview-unknown": Case(("data", "preview", "colord_mnist", "--out", "{dir}/p.png"),
                                 (r"'colord_mnist'", r"did you mean 'colored_mnist'"), out=False),
    "resume-empty-out": Case(("run", "--resume", "--out", "{dir}/empty"),
                             (r"--resume", r"empty", r"no run to resume"), out=False),
    "out-holds-a-run": Case(("run", "--out", "{dir}/existing"), (r"--out", r"existing", r"--resume"), out=False),
}


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory):
    """Run every case once, in turn, in one fresh interpreter (a process apiece would import torch 50 times)."""
    root = tmp_path_factory.mktemp("cli-bad-input")
    calls, dirs = {}, {}
    for name, case in CASES.items():
        case_dir = root / name
        case_dir.mkdir()
        for file, text in FILES.items():
            (case_dir / file).write_text(text)
        (case_dir / "notrun").mkdir()
        (case_dir / "empty").mkdir()
        (case_dir / "existing").mkdir()
        Store.in_dir(case_dir / "existing").close()  # an existing run, cheaply
        (case_dir / "garbled").mkdir()
        (case_dir / "garbled" / STORE_NAME).write_bytes(b"SQLite format 3\0" + bytes(range(256)) * 40)
        (case_dir / "zerobyte").mkdir()
        (case_dir / "zerobyte" / STORE_NAME).touch()
        args = [a.replace("{dir}", str(case_dir)) for a in case.args]
        if case.out:
            args += ["--out", str(case_dir / "out")]
        calls[name] = CliCall(args, base_env(case_dir / "data", **{LOAD_PLUGINS_ENV: case.load}), case_dir)
        dirs[name] = case_dir
    listings = {name: sorted(p.name for p in (d / "existing").iterdir()) for name, d in dirs.items()}
    results = run_in_one_interpreter(list(calls.values()))
    return {name: (result, dirs[name], listings[name]) for name, result in zip(calls, results)}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_line(bad_input_results, name):
    result, case_dir, existing_before = bad_input_results[name]
    assert result.returncode == 2, (result.stdout, result.stderr)
    message = one_line(result.stderr)
    assert re.match(r"^oodbench( [a-z]+)*: error: ", message), message
    for pattern in CASES[name].patterns:
        assert re.search(pattern.replace("{dir}", re.escape(str(case_dir))), message), (pattern, message)
    assert result.stdout == ""
    # nothing was trained or stored
    assert not (case_dir / "out").exists()
    assert not (case_dir / "empty" / STORE_NAME).exists()
    assert sorted(p.name for p in (case_dir / "existing").iterdir()) == existing_before
    assert not (case_dir / "runs").exists()


@pytest.mark.slow
def test_with_the_core_alone_the_default_matrix_runs_its_core_rows_and_lists_the_rest(tmp_path):
    """No plugin distribution loaded: `oodbench run` trains what the core has and skips the rest, saying why."""
    load_mnist()  # the real cache exists before the run links to it
    env = base_env(tmp_path / "data", **{LOAD_PLUGINS_ENV: ""})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist").symlink_to(data_home() / "mnist", target_is_directory=True)
    done = run_cli(["run", "--epochs", "1", "--set", "train_eval_size=1000", "--out", str(tmp_path / "run")], env,
                   tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 done, 16 skipped" in done.stdout
    assert re.search(r"^erm +\d", done.stdout, re.MULTILINE)  # the core's row: ERM on the CNN, float target
    assert "16 skipped cell(s):" in done.stdout
    assert done.stdout.count("not installed: from oodbench-methods or oodbench-snn or oodbench-memristor") == 16
