"""The ``oodbench`` command: parse, call one function, print.

User mistakes (UsageError) print one line and exit 2; failed cells exit 1.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from oodbench import __version__
from oodbench.errors import DataIntegrityError, DataUnavailableError, StorageError, UsageError
from oodbench.matrix import AXES, SEARCH_MAX, SEED_RANGE, Overrides, check_seed, parse_set
from oodbench.plugins import KINDS, get_plugins
from oodbench.scaffold import KINDS as SCAFFOLD_KINDS
from oodbench.search import space_of

from oodbench.render import FORMATS as REPORT_FORMATS
from oodbench.selection import RULES


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or not all(check_seed(s) for s in seeds):
        raise argparse.ArgumentTypeError(f"expected a comma list of integers in [0, {SEED_RANGE[1]}] like 0,1,2, "
                                         f"got {text!r}")
    return seeds


def _selections(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in RULES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown rule {', '.join(unknown) or repr(text)} "
                                         f"(allowed: {', '.join(RULES)}, or a comma list of them)")
    return names


def _positive(text: str, maximum: int = 1_000_000) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise argparse.ArgumentTypeError(f"expected an integer in [1, {maximum}], got {text!r}")
    return value


def _search_size(text: str) -> int:
    return _positive(text, SEARCH_MAX)


def _directory(text: str) -> Path:
    """An existing directory (``--data-dir``): a wrong path is refused even when a cache would hide it."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} does not exist or is not a directory (expected one holding "
                                         "train-images-idx3-ubyte and the other three MNIST IDX files)")
    return path


def _first_line(obj: Any) -> str:
    return ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0]


def cmd_run(args: argparse.Namespace) -> int:
    from oodbench.render import render
    from oodbench.runner import RunOptions, run_matrix
    from oodbench.store import Store

    filters = {axis: getattr(args, singular) for axis, singular in AXES.items() if getattr(args, singular)}
    overrides = Overrides(filters=filters, seeds=args.seeds, epochs=args.epochs,
                          sets=[parse_set(s) for s in args.set], n_hparams=args.n_hparams, trials=args.trials)
    options = RunOptions(matrix=args.matrix, overrides=overrides, out=args.out, resume=args.resume,
                         executor=args.executor, jobs=args.jobs, address=args.address, device=args.device,
                         data_dir=args.data_dir, dry_run=args.dry_run,
                         argv=args.argv)
    summary = run_matrix(options)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items()))
    if args.dry_run:
        print(_plan_table(summary.planned))
        trainings = len({c.training_key for c in summary.planned if not c.skip_reason})
        print(f"\n{len(summary.planned)} cells ({counts}; {trainings} trainings) would run into {summary.run_dir}; "
              f"nothing was created or trained (--dry-run)")
        return 0
    with Store.in_dir(summary.run_dir, readonly=True) as store:
        print(render(store, "table", args.selection))
    print(f"\nrun directory: {summary.run_dir} ({counts})")
    print(f"more: oodbench report {summary.run_dir} --selection val,oracle,oracle_epoch "
          f"--format markdown|latex|json|csv|html")
    if summary.failed:
        print(f"failed cells' tracebacks: oodbench report {summary.run_dir} --failed")
    return 1 if summary.failed else 0


def _plan_table(cells: Sequence[Any]) -> str:
    """The cells a run would train: identity, search configuration, the user's sweep values, skip reason."""
    rows = [[c.dataset, c.backbone, c.algorithm, c.target, c.seed, c.config,
             ", ".join(f"{k}={v}" for k, v in sorted(c.variant.items())), c.skip_reason or ""] for c in cells]
    return tabulate(rows, headers=["dataset", "backbone", "algorithm", "target", "seed", "config", "sweep", "skipped"])


def cmd_plugins(args: argparse.Namespace) -> int:
    from oodbench.plugins import installed_records
    from oodbench.requirements import installed_requirements, run_requirements

    if args.requirements not in (None, True):
        print("\n".join(run_requirements(Path(args.requirements))))
        return 0
    if args.requirements is True:
        print("\n".join(installed_requirements(get_plugins())))
        return 0
    if not args.check:  # from the installed metadata alone: nothing is imported
        records = installed_records()
        if args.json:
            print(json.dumps([{k: r.as_dict()[k] for k in ("name", "dist", "version", "target", "builtin")}
                              for r in records], indent=2))
            return 0
        print(tabulate([[r.name, r.dist, r.version, r.target] for r in records],
                       headers=["plugin", "distribution", "version", "target"]))
        print("\noodbench plugins --check imports each plugin and shows its hooks, and why one does not load")
        return 0
    plugins = get_plugins()
    plugins.failed()
    records = [r.as_dict() for r in plugins.records.values()]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    rows = [[r["name"], r["dist"], r["version"], r["target"], ", ".join(h.removeprefix("oodbench_") for h in r["hooks"]),
             "yes" if r["loaded"] else "no: " + "; ".join(r["errors"])] for r in records]
    print(tabulate(rows, headers=["plugin", "distribution", "version", "target", "hooks", "loaded"]))
    return 0


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from oodbench.scaffold import generated_files, new_plugin

    project = new_plugin(args.name, args.kind, args.dir)
    print(f"created {project}: the {args.kind} {args.name!r} as the distribution {project.name}")
    for name in generated_files(project):
        print(f"  {name}")
    print(f"next: cd {project} && pip install -e '.[test]' && pytest")
    return 0


def _describe(kind: str, obj: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"description": _first_line(obj)}
    if kind != "datasets":
        info["defaults"] = dict(getattr(obj, "defaults", {}) or {})
        info["search_space"] = {k: d.describe() for k, d in space_of(obj).items()}
    if kind == "algorithms":
        info["requires"] = sorted(obj.needs(info["defaults"]))
    if kind == "datasets":
        info["provides"] = sorted(getattr(obj, "provides", ()))
    return info


def cmd_list(args: argparse.Namespace) -> int:
    plugins = get_plugins()
    entries = [{"name": e.name, "dist": e.dist, **_describe(args.kind, e.obj)} for e in plugins.registry(args.kind)]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    extra = {"datasets": "provides", "algorithms": "requires"}.get(args.kind)
    rows = []
    for e in entries:
        space = e.get("search_space", {})
        defaults = "\n".join(f"{k}={v}" + (f"  ({space[k]})" if k in space else "")
                              for k, v in e.get("defaults", {}).items())
        row = [e["name"], e["dist"], *([", ".join(e[extra])] if extra else []), *([defaults] if "defaults" in e else []),
               e["description"]]
        rows.append(row)
    headers = ["name", "distribution", *([extra] if extra else []),
               *(["defaults (search space)"] if args.kind != "datasets" else []), "description"]
    print(tabulate(rows, headers=headers))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from oodbench.render import failed_report, render
    from oodbench.report import open_store

    with open_store(args.run_dir) as store:
        text = failed_report(store) if args.failed else render(store, args.format, args.selection)
    if args.format == "html" and not args.output and not args.failed:  # a page is for a browser, not a terminal
        args.output = args.run_dir / "report.html"
    if args.output:
        args.output.write_text(text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from oodbench.explain import explain

    path, cell = explain(args.run_dir, args.cell, args.out, args.n, args.selection, args.env)
    print(f"wrote {path} (cell {cell['key'][:8]}: {cell['dataset']}/{cell['backbone']}/{cell['algorithm']}/"
          f"{cell['target']}/seed{cell['seed']})")
    return 0


def cmd_leaderboard_check(args: argparse.Namespace) -> int:
    from oodbench.leaderboard import check

    result = check(args.run_dir, args.baseline, args.floor, args.partial)
    print(result.text)
    return 1 if result.failed else 0


def cmd_leaderboard_update(args: argparse.Namespace) -> int:
    from oodbench.leaderboard import update

    print(update(args.run_dir, args.baseline, args.selection, args.floor, args.confidence, args.add))
    return 0


def _percentage_points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected percentage points >= 0 like 2 or 0.5, got {text!r}")
    return value


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from oodbench.data.mnist import data_home, load_mnist

    mnist = load_mnist(args.data_dir, progress=True)
    print(f"MNIST: {len(mnist.train_x)} training and {len(mnist.test_x)} test images from {mnist.source}; "
          f"sha256 verified; cached under {data_home()}")
    return 0


def cmd_data_preview(args: argparse.Namespace) -> int:
    from oodbench.data.preview import preview

    dataset = get_plugins().registry("datasets").get(args.dataset, where="data preview")
    envs = dataset.build(args.seed, args.data_dir)
    path = preview(envs, args.out, per_env=args.per_env, attribute_values=tuple(dataset.attribute_values))
    print(f"wrote {path}")
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="oodbench", description="Benchmark OOD generalization under spurious correlations.")
    parser.add_argument("--version", action="version", version=f"oodbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a matrix of datasets x backbones x algorithms x targets x seeds")
    run.add_argument("--matrix", nargs="?", const=None, default=None, metavar="NAME|FILE.toml",
                     help="a named matrix or a TOML file (default: quick)")
    for singular, short in (("dataset", "-d"), ("backbone", "-b"), ("algorithm", "-a"), ("target", "-t")):
        run.add_argument(short, f"--{singular}", action="append", default=[], metavar="NAME",
                         help=f"run only this {singular} (repeatable)")
    run.add_argument("--seeds", type=_seeds, help="comma list, e.g. 0,1,2")
    run.add_argument("--n-hparams", type=_search_size, metavar="K",
                     help="random search: configuration 0 = defaults, 1..K-1 drawn from the declared spaces")
    run.add_argument("--trials", type=_search_size, metavar="T", help="trials of the search: seeds 0..T-1")
    run.add_argument("--epochs", type=_positive, help="override the training budget of every cell")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="hyperparameter override, e.g. lr=1e-3 or erm.lr=1e-3 (repeatable)")
    run.add_argument("--out", type=Path, help="run directory (default: runs/<matrix>-<time>)")
    run.add_argument("--resume", action="store_true", help="finish the run in --out, keeping every done cell")
    run.add_argument("--dry-run", action="store_true",
                     help="check everything and list the cells it would train; create, train and store nothing")
    run.add_argument("--executor", default="local", choices=["local", "process", "ray"],
                     help="where jobs run: in this process, a process pool, or Ray (pip install 'oodbench[ray]')")
    run.add_argument("--jobs", type=_positive, default=1,
                     help="jobs at once: worker processes (process) or the local Ray instance's CPUs (ray)")
    run.add_argument("--address", metavar="HOST:PORT|auto",
                     help="with --executor ray: join this Ray cluster instead of starting one here")
    run.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    run.add_argument("--data-dir", type=_directory, help="a directory holding the four MNIST IDX files")
    run.add_argument("--selection", type=_selections, default=["val"], metavar="RULE[,RULE]",
                     help=f"selection rule(s) of the printed table: {', '.join(RULES)} (e.g. val,oracle)")
    run.set_defaults(func=cmd_run)

    plugins = sub.add_parser("plugins", help="installed plugins: distribution, version, target (--check: hooks, "
                                            "load errors)")
    plugins.add_argument("--check", action="store_true", help="import each plugin: its hooks, and why one does not load")
    output = plugins.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--requirements", nargs="?", const=True, metavar="RUN_DIR",
                        help="pinned name==version lines of the installed plugins, or of those a run used")
    plugins.set_defaults(func=cmd_plugins)

    new = sub.add_parser("new-plugin", help="scaffold a plugin distribution: example, README, tests")
    new.add_argument("name", metavar="NAME", help="the registered name, e.g. my_method (-> oodbench-my-method)")
    new.add_argument("--kind", default="algorithm", choices=list(SCAFFOLD_KINDS))
    new.add_argument("--dir", type=Path, default=Path("."), help="where to create oodbench-NAME/ (default: here)")
    new.set_defaults(func=cmd_new_plugin)

    listing = sub.add_parser("list", help="registered datasets, backbones, algorithms or targets")
    listing.add_argument("kind", choices=KINDS)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)

    report = sub.add_parser("report", help="render a run directory's results")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.add_argument("--format", default="table", choices=list(REPORT_FORMATS),
                        help="html: a self-contained page with plots (default file RUN_DIR/report.html)")
    report.add_argument("--selection", type=_selections, default=["val"], metavar="RULE[,RULE]",
                        help=f"{', '.join(RULES)}; a comma list gives one table per rule")
    report.add_argument("--output", "--out", "-o", type=Path, help="write to this file instead of stdout")
    report.add_argument("--failed", action="store_true",
                        help="the failed cells with their full tracebacks instead of the tables")
    report.set_defaults(func=cmd_report)

    why = sub.add_parser("explain", help="Grad-CAM maps of a trained cell's last conv layer on its test images")
    why.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    why.add_argument("--cell", required=True, metavar="KEY|LABEL",
                     help="a key prefix, or dataset/backbone/algorithm/target/seedN (leading parts suffice)")
    why.add_argument("--out", type=Path, required=True, help="the PNG to write")
    why.add_argument("--n", type=_positive, default=16, help="images per test environment (default 16)")
    why.add_argument("--env", action="append", default=[], metavar="NAME",
                     help="only this test environment (repeatable; default: all)")
    why.add_argument("--selection", default="val", choices=list(RULES), help="whose checkpoint (default val)")
    why.set_defaults(func=cmd_explain)

    board = sub.add_parser("leaderboard", help="compare a run with a committed baseline, or rewrite the baseline")
    board_sub = board.add_subparsers(dest="leaderboard_command", required=True, metavar="ACTION")
    check = board_sub.add_parser("check", help="exit 1 when a guarded metric left the baseline's prediction interval "
                                               "(either way) or an entry is missing")
    update = board_sub.add_parser("update", help="rewrite the baseline from a run")
    check.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    update.add_argument("run_dir", type=Path, nargs="+", metavar="RUN_DIR",
                        help="a run; several: replicate runs of one matrix (other thread counts, executors), whose "
                             "values are recorded side by side per seed")
    for action, func in ((check, cmd_leaderboard_check), (update, cmd_leaderboard_update)):
        action.add_argument("--baseline", type=Path, required=True, metavar="FILE", help="the baseline JSON file")
        action.add_argument("--floor", type=_percentage_points, metavar="PP",
                            help="the narrowest allowed move in percentage points (default: the baseline's, 0.5)")
        action.set_defaults(func=func)
    check.add_argument("--partial", action="store_true",
                       help="the run is part of the baseline's matrix: entries it lacks are not run, not missing")
    update.add_argument("--selection", default="val", metavar="RULES",
                        help=f"the rules the baseline guards, comma-separated (of {', '.join(RULES)}; default val)")
    update.add_argument("--confidence", type=float, metavar="P",
                        help="two-sided confidence of each interval (default: the baseline's, 0.99)")
    update.add_argument("--add", action="store_true",
                        help="keep the baseline's samples from other kinds of CPU (other numerics fingerprints) "
                             "where the code and configuration are unchanged: record this kind beside them")

    data = sub.add_parser("data", help="fetch and look at data")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = data_sub.add_parser("fetch", help="download, verify and cache MNIST")
    fetch.add_argument("name", nargs="?", default="mnist", choices=["mnist"])
    fetch.add_argument("--data-dir", type=_directory, help="a directory holding the four MNIST IDX files")
    fetch.set_defaults(func=cmd_data_fetch)
    prev = data_sub.add_parser("preview", help="a PNG grid of a dataset's environments")
    prev.add_argument("dataset")
    prev.add_argument("--out", type=Path, required=True)
    prev.add_argument("--seed", type=int, default=0)
    prev.add_argument("--per-env", type=_positive, default=8)
    prev.add_argument("--data-dir", type=_directory)
    prev.set_defaults(func=cmd_data_preview)
    return parser


USES_PLUGINS = ("run", "list", "explain", "new-plugin", "data")
"""Commands that load the plugins (and so torch); the reading ones (report, leaderboard, plugins) do not."""


def _warn_failed_plugins() -> None:
    plugins = get_plugins()
    for record in plugins.failed():
        print(f"oodbench: warning: plugin {record.name!r} from {record.dist} did not load: {'; '.join(record.errors)} "
              "(OODBENCH_LOAD_PLUGINS limits which plugins load)", file=sys.stderr)
    for warning in plugins.warnings:
        print(f"oodbench: warning: {warning}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what the run records as its command
    try:
        if args.command in USES_PLUGINS:
            _warn_failed_plugins()
        return args.func(args)
    except (UsageError, DataIntegrityError, DataUnavailableError, StorageError) as exc:
        print(f"oodbench: error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:  # a store damaged after it was opened
        print(f"oodbench: error: a run's results.sqlite could not be read or written ({exc})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("oodbench: interrupted; finished cells are stored, continue with --resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `oodbench report ... | head`: the reader left, nothing to say
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
