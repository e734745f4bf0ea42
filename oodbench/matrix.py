"""Matrix files -> cells: crossing, include/exclude, filters, hyperparameters, skip reasons.

A matrix is a TOML file (or a named one shipped in ``oodbench/matrices``)::

    datasets = ["colored_mnist"]
    backbones = ["cnn"]
    algorithms = ["erm"]
    targets = ["float"]
    seeds = [0, 1, 2]
    [training]            # epochs, batch_size, holdout_fraction, train_eval_size
    epochs = 5
    [hparams.erm]         # per algorithm, backbone or target; algorithms may also set training keys
    lr = 1e-3             # an array is a sweep: lr = [1e-4, 1e-3] gives a cell per value
    [[include]]           # extra combinations, CI-matrix style
    dataset = "colored_mnist"
    backbone = "mlp"
    algorithm = "erm"
    target = "float"
    [[exclude]]           # drop every combination matching all given keys
    backbone = "mlp"
    [search]              # random search: configuration 0 = defaults, 1..n_hparams-1 drawn (oodbench.search)
    n_hparams = 8
    trials = 3            # seeds 0..trials-1 (instead of ``seeds``)

Every field is validated; a mistake is a one-line UsageError naming the file,
the field and the allowed values.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Self

from oodbench.distributions import Bounded
from oodbench.draws import DRAWS, MAX_DRAWS
from oodbench.errors import UsageError
from oodbench.plugins import PluginSet, normalize_dist
from oodbench.search import config_seed, draw, space_of

DEFAULT_MATRIX = "quick"
AXES = {"datasets": "dataset", "backbones": "backbone", "algorithms": "algorithm", "targets": "target"}
TRAINING_DEFAULTS: dict[str, Any] = {"epochs": 5, "batch_size": 128, "holdout_fraction": 0.1, "train_eval_size": 5000}
TRAINING_OPTIONS: dict[str, Any] = TRAINING_DEFAULTS | {"hardware_aware": ""}
"""Every training key: the defaults, and options that are absent from a training unless set (so adding one left
every earlier training's content hash as it was). ``hardware_aware`` names a target whose devices perturb the
weights during training (``oodbench.hardware_aware``); empty is off."""
TRAINING_LIMITS: dict[str, tuple[float, float, str]] = {
    "epochs": (1, float("inf"), "at least 1"),
    "batch_size": (1, 1_000_000, "in [1, 1000000], and at most the smallest training environment"),
    "holdout_fraction": (0.0, 0.5, "in (0, 0.5]: held out of every train environment (half training-domain "
                                   "validation, half ID test) and of every test environment (the oracles' part)"),
    "train_eval_size": (0, float("inf"), "0 (all) or more"),
}
TOP_LEVEL_KEYS = ("name", "description", "requires", *AXES, "seeds", "threads", "training", "hparams", "search",
                  "include", "exclude")
MAX_THREADS = 1024
SEARCH_KEYS = ("n_hparams", "trials")
SEARCHED = ("algorithms", "backbones")
"""Components whose declared search spaces random search draws from; targets are deployments, not training."""
INCLUDE_KEYS = ("dataset", "backbone", "algorithm", "target", "seeds")
EXCLUDE_KEYS = ("dataset", "backbone", "algorithm", "target", "seed")


@dataclass
class Matrix:
    """A parsed, not yet expanded, matrix file."""

    name: str
    source: str
    description: str = ""
    requires: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    backbones: list[str] = field(default_factory=list)
    algorithms: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=lambda: ["float"])
    seeds: list[int] = field(default_factory=lambda: [0])
    threads: int | None = None
    """torch threads of every training, whatever the executor gives a worker: where a regression guard needs runs
    that are bit-identical on one kind of CPU (docs/reports.md), since kernels sum in another order on another
    thread count. None: the executor's share of the cores."""
    training: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    search: dict[str, int] = field(default_factory=dict)
    include: list[dict[str, Any]] = field(default_factory=list)
    exclude: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "source", "description", "requires", *AXES, "seeds", "threads",
                                                "training", "hparams", "search", "include", "exclude")}


@dataclass
class Overrides:
    """What the command line changes: filters per axis, seeds, epochs, ``--set`` pairs, the search's size."""

    filters: dict[str, list[str]] = field(default_factory=dict)
    seeds: list[int] | None = None
    epochs: int | None = None
    sets: list[tuple[str, Any]] = field(default_factory=list)
    n_hparams: int | None = None
    trials: int | None = None


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    """One (dataset, backbone, algorithm, target, seed = trial, configuration) with resolved hyperparameters.

    ``variant`` holds the values of the user's own sweeps (``lr = [a, b]``),
    which stay separate rows; ``config`` is the random-search configuration,
    which selection chooses among. ``data_hash`` identifies the data the
    dataset builds (its spec hash, or its plugin's version).
    """

    dataset: str
    backbone: str
    algorithm: str
    target: str
    seed: int
    training: dict[str, Any]
    algorithm_hparams: dict[str, Any]
    backbone_hparams: dict[str, Any]
    target_hparams: dict[str, Any]
    skip_reason: str | None = None
    config: int = 0
    variant: dict[str, Any] = field(default_factory=dict)
    data_hash: str | None = None

    @property
    def training_key(self) -> str:
        """Content hash of everything that shapes the trained network, the data included; targets share it."""
        return _digest([self.dataset, self.data_hash, self.backbone, self.algorithm, self.seed, self.training,
                        self.algorithm_hparams, self.backbone_hparams])

    @property
    def key(self) -> str:
        return _digest([self.training_key, self.target, self.target_hparams])

    def hparams(self) -> dict[str, dict[str, Any]]:
        return {"training": self.training, "algorithm": self.algorithm_hparams,
                "backbone": self.backbone_hparams, "target": self.target_hparams}

    def label(self) -> str:
        config = f"/config{self.config}" if self.config else ""
        return f"{self.dataset}/{self.backbone}/{self.algorithm}/{self.target}/seed{self.seed}{config}"


class Sweep(tuple):
    """The values one hyperparameter slot takes, one cell each; ``origin`` names where the list was written.

    Slots filled from the same origin (``--set lr=...`` reaching two
    components) vary together; different origins are crossed. A tuple, so it
    serialises as a JSON array wherever the matrix is recorded.
    """

    origin: str

    def __new__(cls, values: Any, origin: str) -> Self:
        sweep = super().__new__(cls, values)
        sweep.origin = origin
        return sweep

    def __getnewargs__(self) -> tuple[tuple, str]:  # pickling (process and Ray executors) keeps the origin
        return tuple(self), self.origin


def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML would read it (1e-3, 64, true, "x"); bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(item: str) -> tuple[str, Any]:
    """``KEY=VALUE``; a VALUE that is not one TOML value but has commas is a sweep: ``lr=1e-4,1e-3`` -> a list."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=1e-3 or --set erm.lr=1e-3")
    value = value.strip()
    parsed = parse_value(value)
    if parsed == value and "," in value:  # not TOML (a quoted "a,b" or an array [1, 2] would have parsed)
        return key.strip(), [parse_value(part.strip()) for part in value.split(",")]
    return key.strip(), parsed


def named_matrices() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("oodbench.matrices").iterdir() if p.name.endswith(".toml"))


def load_matrix(spec: str | None) -> Matrix:
    """A matrix by name (shipped) or by path; ``None`` means the default matrix."""
    spec = spec or DEFAULT_MATRIX
    path = Path(spec)
    if spec.endswith(".toml") or path.exists():
        if not path.is_file():
            raise UsageError(f"--matrix {spec}: no such file")
        text, source = path.read_text(), str(path)
    elif spec in named_matrices():
        text, source = resources.files("oodbench.matrices").joinpath(f"{spec}.toml").read_text(), f"{spec} (built in)"
    else:
        raise UsageError(f"--matrix {spec!r}: not a file and not a named matrix (named: {', '.join(named_matrices())})")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None
    return parse_matrix(data, source, default_name=path.stem)


def _names(value: Any, source: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{source}: field {key!r} must be a list of names, got {value!r}")
    return list(value)


SEED_RANGE = (0, 2**32 - 1)
"""Seeds every random source takes (numpy's are 32-bit unsigned)."""


def check_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and SEED_RANGE[0] <= value <= SEED_RANGE[1]


def _seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(check_seed(v) for v in value):
        raise UsageError(f"{where} must be a non-empty list of integers in [0, {SEED_RANGE[1]}], got {value!r}")
    return list(value)


def _table_list(value: Any, source: str, key: str, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise UsageError(f"{source}: field {key!r} must be an array of tables ([[{key}]])")
    for i, entry in enumerate(value):
        for k in entry:
            if k not in allowed:
                raise UsageError(f"{source}: {key}[{i}] has unknown key {k!r} (allowed: {', '.join(allowed)})")
    return list(value)


def parse_matrix(data: dict[str, Any], source: str, default_name: str = "matrix") -> Matrix:
    """Validate the shape of a matrix file; names are checked later against the registries."""
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise UsageError(f"{source}: unknown field {key!r} (allowed: {', '.join(TOP_LEVEL_KEYS)})")
    matrix = Matrix(name=str(data.get("name", default_name)), source=source,
                    description=str(data.get("description", "")))
    for key in ("requires", *AXES):
        if key in data:
            setattr(matrix, key, _names(data[key], source, key))
    if "seeds" in data:
        matrix.seeds = _seeds(data["seeds"], f"{source}: field 'seeds'")
    if "threads" in data:
        threads = data["threads"]
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
            raise UsageError(f"{source}: field 'threads' is {threads!r} (allowed: an integer in [1, {MAX_THREADS}], "
                             f"the torch threads of every training)")
        matrix.threads = threads
    training = data.get("training", {})
    if not isinstance(training, dict):
        raise UsageError(f"{source}: field 'training' must be a table")
    for key, value in training.items():
        matrix.training[key] = check_training(key, value, f"{source}: training.{key}")
    hparams = data.get("hparams", {})
    if not isinstance(hparams, dict) or not all(isinstance(v, dict) for v in hparams.values()):
        raise UsageError(f"{source}: field 'hparams' must hold one table per component, e.g. [hparams.erm]")
    matrix.hparams = {k: dict(v) for k, v in hparams.items()}
    matrix.search = _search_table(data.get("search", {}), source)
    if "trials" in matrix.search and "seeds" in data:
        raise UsageError(f"{source}: give 'seeds' or 'search.trials', not both (trials = T means seeds 0..T-1)")
    matrix.include = _table_list(data.get("include", []), source, "include", INCLUDE_KEYS)
    for i, entry in enumerate(matrix.include):
        missing = [k for k in INCLUDE_KEYS[:4] if k not in entry]
        if missing:
            raise UsageError(f"{source}: include[{i}] lacks {', '.join(missing)} (an include names a full combination)")
        for key in INCLUDE_KEYS[:4]:
            if not isinstance(entry[key], str):
                raise UsageError(f"{source}: include[{i}].{key} must be a name, got {entry[key]!r}")
        if "seeds" in entry:
            _seeds(entry["seeds"], f"{source}: include[{i}].seeds")
    matrix.exclude = _table_list(data.get("exclude", []), source, "exclude", EXCLUDE_KEYS)
    return matrix


SEARCH_MAX = 10_000
"""The most configurations or trials a search may ask for (each one is a training per cell)."""


def check_count(value: Any, where: str) -> int:
    """A search size: an integer in [1, SEARCH_MAX]."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= SEARCH_MAX:
        raise UsageError(f"{where}: expected an integer in [1, {SEARCH_MAX}], got {value!r}")
    return value


def _search_table(value: Any, source: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise UsageError(f"{source}: field 'search' must be a table ([search] with n_hparams, trials)")
    for key in value:
        if key not in SEARCH_KEYS:
            raise UsageError(f"{source}: search has unknown key {key!r} (allowed: {', '.join(SEARCH_KEYS)})")
    return {key: check_count(v, f"{source}: search.{key}") for key, v in value.items()}


def _sweep(value: list | tuple, where: str, check: Any) -> Sweep:
    """A list value as a ``Sweep`` of checked elements: non-empty, flat."""
    if not value:
        raise UsageError(f"{where}: an empty list (a list is a sweep: give at least one value)")
    if any(isinstance(v, (list, tuple, dict)) for v in value):
        raise UsageError(f"{where}: a sweep's values must be single values, got {list(value)!r}")
    return Sweep((check(v) for v in value), getattr(value, "origin", where))


def check_value(key: str, value: Any, defaults: dict[str, Any], where: str, space: dict[str, Any] | None = None) -> Any:
    """``value`` if ``key`` is known, its type matches the default's (ints pass for floats) and it lies in the
    range the component declares for it in ``space``.

    A list is a sweep: each element is checked, and a ``Sweep`` comes back.
    """
    if key not in defaults:
        raise UsageError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(defaults)) or 'none'})")
    if isinstance(value, (list, tuple)):
        return _sweep(value, where, lambda v: check_value(key, v, defaults, where, space))
    expected = defaults[key]
    if isinstance(expected, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(expected, bool)
    elif isinstance(expected, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
        if ok and not math.isfinite(value) and math.isfinite(expected):
            raise UsageError(f"{where}: expected a finite number like {expected!r}, got {value!r}")
    else:
        ok = isinstance(value, type(expected))
    if not ok:
        raise UsageError(f"{where}: expected {type(expected).__name__} like {expected!r}, got {value!r}")
    dist = (space or {}).get(key)
    if dist is not None and not dist.contains(value):
        raise UsageError(f"{where}: {value!r} is outside the declared range (allowed: {dist.describe()})")
    return value


def check_training(key: str, value: Any, where: str) -> Any:
    """A training option of the right type and in its range (every value of a sweep)."""
    if isinstance(value, (list, tuple)):
        return _sweep(value, where, lambda v: check_training(key, v, where))
    value = check_value(key, value, TRAINING_OPTIONS, where)
    if key not in TRAINING_LIMITS:
        return value
    low, high, allowed = TRAINING_LIMITS[key]
    if not low <= value <= high or (key == "holdout_fraction" and value == 0):
        raise UsageError(f"{where}: {value!r} is out of range (allowed: {allowed})")
    return value


def _table_entry(kind: str, key: str, value: Any, defaults: dict[str, Any], where: str,
                 space: dict[str, Any] | None = None) -> tuple[str, Any]:
    """Where a ``[hparams.NAME]`` entry goes (``training`` or the component itself) and its checked value.

    An algorithm's table may also set training options (per-method budgets);
    a key the algorithm declares itself stays the algorithm's.
    """
    if kind == "algorithms" and key in TRAINING_OPTIONS and key not in defaults:
        return "training", check_training(key, value, where)
    allowed = defaults | (TRAINING_OPTIONS if kind == "algorithms" else {})
    return kind, check_value(key, value, allowed, where, space)


class _Components:
    """Defaults of every component a cell touches, looked up from the registries."""

    def __init__(self, plugins: PluginSet) -> None:
        self.plugins = plugins

    def defaults(self, kind: str, name: str) -> dict[str, Any]:
        return dict(getattr(self.plugins.registry(kind).get(name), "defaults", {}) or {})

    def space(self, kind: str, name: str) -> dict[str, Any]:
        """The component's declared ranges; a stochastic target's ``draws`` is bounded here for every target."""
        component = self.plugins.registry(kind).get(name)
        space = space_of(component)
        if kind == "targets" and DRAWS in getattr(component, "defaults", {}):
            space.setdefault(DRAWS, Bounded(1, MAX_DRAWS))
        return space

    def data_hash(self, dataset: str) -> str:
        """The dataset's spec hash, or for a dataset defined by code, the distribution and version that define it."""
        spec_hash = getattr(self.plugins.registry("datasets").get(dataset), "spec_hash", None)
        return spec_hash or " ".join(self.plugins.dist_of("datasets", dataset))

    def kind_of(self, name: str) -> list[str]:
        return [k for k in ("algorithms", "backbones", "targets") if name in self.plugins.registry(k)]


def _missing_requires(matrix: Matrix, plugins: PluginSet) -> list[str]:
    loaded = {normalize_dist(r.dist) for r in plugins.records.values() if r.loaded}
    return [d for d in matrix.requires if normalize_dist(d) not in loaded]


def _matrix_name(plugins: PluginSet, axis: str, name: str, where: str, missing: list[str]) -> bool:
    """Whether a name the matrix file uses is installed. An unknown name is an error, unless a distribution the
    matrix requires is absent: then it most likely comes from there, and its cells are skipped with that reason."""
    if name in plugins.registry(axis):
        return True
    if missing:
        return False
    plugins.registry(axis).get(name, where=where)
    return True


def _absent_reason(missing: list[str]) -> str:
    return f"not installed: from {' or '.join(missing)}, which the matrix requires (`make setup` installs them)"


def expand(matrix: Matrix, plugins: PluginSet, overrides: Overrides | None = None) -> list[Cell]:
    """Every cell of the matrix after filters, include/exclude and hyperparameter resolution.

    Names are checked where they are used: an axis the command line replaces,
    an include it filters out, or a ``[hparams.NAME]`` of a missing required
    distribution does not stop a run that does not need them.
    """
    overrides = overrides or Overrides()
    missing = _missing_requires(matrix, plugins)
    components = _Components(plugins)
    axes = {axis: list(getattr(matrix, axis)) for axis in AXES}
    for axis, names in overrides.filters.items():
        for name in names:
            plugins.registry(axis).get(name, where=f"--{AXES[axis]}")
        axes[axis] = list(dict.fromkeys(names))
    absent: set[str] = set()
    for axis, names in axes.items():
        if axis not in overrides.filters:
            absent |= {name for name in names
                       if not _matrix_name(plugins, axis, name, f"{matrix.source}: {axis}", missing)}
    search = matrix.search | {k: v for k, v in (("n_hparams", overrides.n_hparams), ("trials", overrides.trials))
                              if v is not None}
    if overrides.seeds and overrides.trials:
        raise UsageError("--seeds and --trials: give one (--trials T means seeds 0..T-1)")
    seeds = overrides.seeds or (list(range(search["trials"])) if "trials" in search else matrix.seeds)
    combos = [dict(zip(AXES.values(), c)) | {"seeds": seeds} for c in itertools.product(*axes.values())]
    for i, entry in enumerate(matrix.include):
        if all(entry[AXES[a]] in names for a, names in overrides.filters.items()):
            for axis, singular in AXES.items():
                if not _matrix_name(plugins, axis, entry[singular], f"{matrix.source}: include[{i}].{singular}",
                                    missing):
                    absent.add(entry[singular])
            combos.append({k: entry[k] for k in AXES.values()} | {"seeds": overrides.seeds or entry.get("seeds", seeds)})
    singular_axes = {singular: axis for axis, singular in AXES.items()}
    for i, entry in enumerate(matrix.exclude):  # a misspelt name would exclude nothing, silently
        for key, value in entry.items():
            if key == "seed":
                if not check_seed(value):
                    raise UsageError(f"{matrix.source}: exclude[{i}].seed must be an integer in "
                                     f"[0, {SEED_RANGE[1]}], got {value!r}")
            elif not isinstance(value, str):
                raise UsageError(f"{matrix.source}: exclude[{i}].{key} must be a name, got {value!r}")
            else:
                _matrix_name(plugins, singular_axes[key], value, f"{matrix.source}: exclude[{i}].{key}", missing)
    for name, table in matrix.hparams.items():
        kinds = components.kind_of(name)
        if not kinds and missing:
            continue  # most likely a component of the missing distribution; no selected cell can use it
        if not kinds:
            raise UsageError(f"{matrix.source}: [hparams.{name}] names no installed algorithm, backbone or target")
        # checked here too, so a mistake in a table no selected cell uses is not silently ignored
        for key, value in table.items():
            kind = next((k for k in kinds if key in components.defaults(k, name)
                         or (k == "algorithms" and key in TRAINING_OPTIONS)), kinds[0])
            _table_entry(kind, key, value, components.defaults(kind, name), f"{matrix.source}: hparams.{name}.{key}",
                         components.space(kind, name))
    present = [c for c in combos if not absent & {c[k] for k in AXES.values()}]
    sets = _check_sets(overrides.sets, present, components)
    cells: dict[str, Cell] = {}
    for combo in combos:
        for seed in combo["seeds"]:
            point = {k: combo[k] for k in AXES.values()} | {"seed": seed}
            if any(all(point[k] == v for k, v in ex.items()) for ex in matrix.exclude):
                continue
            if combo not in present:
                cell = Cell(**point, training=dict(TRAINING_DEFAULTS) | matrix.training, algorithm_hparams={},
                            backbone_hparams={}, target_hparams={}, skip_reason=_absent_reason(missing))
                cells.setdefault(cell.key, cell)
                continue
            for cell in _resolve(point, matrix, overrides, sets, components, search.get("n_hparams", 1)):
                cells.setdefault(cell.key, cell)
    return list(cells.values())


def _check_sets(sets: list[tuple[str, Any]], combos: list[dict], components: _Components) -> list[tuple[str, str, Any]]:
    """Split ``--set`` keys into (component or '', key, value) and reject keys nothing declares."""
    selected = {kind: {c[AXES[kind]] for c in combos} for kind in ("algorithms", "backbones", "targets")}
    declared = {(name, k) for kind, names in selected.items() for name in names for k in components.defaults(kind, name)}
    declared |= {(name, k) for name in selected["algorithms"] for k in TRAINING_OPTIONS}
    allowed = sorted(set(TRAINING_OPTIONS) | {k for _, k in declared} | {f"{n}.{k}" for n, k in declared})
    checked = []
    for key, value in sets:
        scope, _, bare = key.rpartition(".")
        if scope == "training":
            ok = bare in TRAINING_OPTIONS
        elif scope:
            ok = (scope, bare) in declared
        else:
            ok = bare in TRAINING_OPTIONS or any(k == bare for _, k in declared)
        if not ok:
            raise UsageError(f"--set {key}: no selected algorithm, backbone, target or training option has it "
                             f"(allowed: {', '.join(allowed)})")
        checked.append((scope, bare, value))
    return checked


def _resolve(point: dict[str, Any], matrix: Matrix, overrides: Overrides, sets: list[tuple[str, str, Any]],
             components: _Components, n_hparams: int = 1) -> list[Cell]:
    """The cells of one point: one per combination of its swept values and per search configuration."""
    names = {"algorithms": point["algorithm"], "backbones": point["backbone"], "targets": point["target"]}
    training = dict(TRAINING_DEFAULTS) | matrix.training
    declared = {kind: components.defaults(kind, name) for kind, name in names.items()}
    spaces = {kind: components.space(kind, name) for kind, name in names.items()}
    sections = {kind: dict(values) for kind, values in declared.items()}
    pinned: dict[str, set[str]] = {kind: set() for kind in names}
    for kind, name in names.items():
        for key, value in matrix.hparams.get(name, {}).items():
            section, checked = _table_entry(kind, key, value, declared[kind], f"{matrix.source}: hparams.{name}.{key}",
                                            spaces[kind])
            if section == "training":
                training[key] = checked
            else:
                sections[kind][key] = checked
                pinned[kind].add(key)
    for scope, key, value in sorted(sets, key=lambda s: bool(s[0])):
        if scope == "training":
            training[key] = check_training(key, value, f"--set training.{key}")
            continue
        targets = [kind for kind, name in names.items() if scope in ("", name) and key in sections[kind]]
        where = f"--set {scope}.{key}" if scope else f"--set {key}"
        for kind in targets:
            sections[kind][key] = check_value(key, value, declared[kind], where, spaces[kind])
            pinned[kind].add(key)
        if key in TRAINING_OPTIONS and (scope in ("", point["algorithm"])) and not targets:
            training[key] = check_training(key, value, where)
    if overrides.epochs is not None:
        training["epochs"] = overrides.epochs
    _check_hardware_aware(training, components, matrix.source)
    data_hash = components.data_hash(point["dataset"])
    cells = []
    for chosen, variant in _unswept({"training": training, **sections}):
        skip = _skip_reason(point, components, chosen["algorithms"], chosen["targets"])
        for config in range(n_hparams):
            drawn = {kind: chosen[kind] | _drawn(point, config, kind, spaces[kind], pinned[kind])
                     for kind in SEARCHED}
            cells.append(Cell(dataset=point["dataset"], backbone=point["backbone"], algorithm=point["algorithm"],
                              target=point["target"], seed=point["seed"], training=_without_off(chosen["training"]),
                              algorithm_hparams=drawn["algorithms"], backbone_hparams=drawn["backbones"],
                              target_hparams=chosen["targets"], skip_reason=skip, config=config, variant=variant,
                              data_hash=data_hash))
    return cells


def _check_hardware_aware(training: dict[str, Any], components: _Components, source: str) -> None:
    """Refuse a ``hardware_aware`` that names no target able to perturb weights."""
    values = training.get("hardware_aware", "")
    registry = components.plugins.registry("targets")
    able = sorted(n for n in registry.names() if callable(getattr(registry.get(n), "perturb_weight", None)))
    for value in values if isinstance(values, Sweep) else [values]:
        if value and value not in able:
            raise UsageError(f"{source}: training.hardware_aware = {value!r} is not a target that perturbs weights "
                             f"(allowed: {', '.join(able) or 'none installed'}, or \"\" for off)")


def _without_off(training: dict[str, Any]) -> dict[str, Any]:
    """The training with its options that are off left out, as a training from before they existed has them."""
    return {k: v for k, v in training.items() if k in TRAINING_DEFAULTS or v != TRAINING_OPTIONS[k]}


def _drawn(point: dict[str, Any], config: int, kind: str, space: dict[str, Any], pinned: set[str]) -> dict[str, Any]:
    """Configuration ``config``'s draws for one component (nothing for configuration 0, the defaults)."""
    if config == 0:
        return {}
    seed = config_seed(point["dataset"], point["backbone"], point["algorithm"], config, kind)
    return draw(space, seed, pinned)


def _unswept(sections: dict[str, dict[str, Any]]) -> list[tuple[dict[str, dict[str, Any]], dict[str, Any]]]:
    """Every combination of the sweeps in ``sections`` (cross product over origins), as plain values, each with
    its variant: the swept keys and the values this combination gives them."""
    axes = {v.origin: v for values in sections.values() for v in values.values() if isinstance(v, Sweep)}
    swept = sorted({(key, v.origin) for values in sections.values() for key, v in values.items()
                    if isinstance(v, Sweep)})
    combinations = []
    for picks in itertools.product(*axes.values()):
        chosen = dict(zip(axes, picks))
        plain = {name: {k: chosen[v.origin] if isinstance(v, Sweep) else v for k, v in values.items()}
                 for name, values in sections.items()}
        combinations.append((plain, {key: chosen[origin] for key, origin in swept}))
    return combinations


def _skip_reason(point: dict[str, Any], components: _Components, algorithm_hparams: dict[str, Any],
                 target_hparams: dict[str, Any]) -> str | None:
    """Why a plugin declares this combination unsupported, or None."""
    plugins = components.plugins
    dataset = plugins.registry("datasets").get(point["dataset"])
    algorithm = plugins.registry("algorithms").get(point["algorithm"])
    missing = set(algorithm.needs(algorithm_hparams)) - set(getattr(dataset, "provides", ()))
    if missing:
        return f"algorithm {point['algorithm']} requires {', '.join(sorted(missing))}, which dataset {point['dataset']} does not provide"
    target = plugins.registry("targets").get(point["target"])(**target_hparams)
    if not target.supports(point["backbone"]):
        return f"target {point['target']} does not support backbone {point['backbone']}"
    return None
