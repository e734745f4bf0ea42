"""The hook specifications: each takes one ``register`` callback.

Plugins only declare what they provide; the core owns collection, duplicate
detection and error messages (see ``oodbench.plugins``).
"""

import pluggy

hookspec = pluggy.HookspecMarker("oodbench")
hookimpl = pluggy.HookimplMarker("oodbench")


@hookspec
def oodbench_register_datasets(register):
    """Register datasets: ``register(dataset, name=None)``."""


@hookspec
def oodbench_register_backbones(register):
    """Register backbone factories: ``register(factory, name=None)``."""


@hookspec
def oodbench_register_algorithms(register):
    """Register Algorithm subclasses: ``register(algorithm_class, name=None)``."""


@hookspec
def oodbench_register_targets(register):
    """Register hardware targets: ``register(target, name=None)``."""
