"""Random hyperparameter search: which values configuration k of a component gets, and the declared ranges.

Configuration 0 is the defaults. Configuration k >= 1 draws every searched
hyperparameter a user did not pin from its declared distribution, with a
random generator seeded by (dataset, backbone, algorithm, k, component,
hyperparameter), so the same k gives the same values on every machine, in
every trial and whatever else the matrix holds. Trials (seeds) vary the data
split and the initialisation, never the configuration.
"""

from __future__ import annotations

import random
from typing import Any

from oodbench.distributions import Distribution


def space_of(component: Any) -> dict[str, Distribution]:
    """The component's declared search space (empty when it declares none)."""
    return dict(getattr(component, "search_space", None) or {})


def check_space(component: Any, label: str) -> None:
    """A plugin's search space names only its own hyperparameters and allows each default: else ValueError."""
    defaults = dict(getattr(component, "defaults", None) or {})
    for key, dist in space_of(component).items():
        if key not in defaults:
            raise ValueError(f"{label}: search_space names {key!r}, which is not in its defaults "
                             f"({', '.join(sorted(defaults)) or 'none'})")
        if not isinstance(dist, Distribution):
            raise ValueError(f"{label}: search_space[{key!r}] is {dist!r}, not a distribution from oodbench.api")
        if not dist.contains(defaults[key]):
            raise ValueError(f"{label}: default {key}={defaults[key]!r} lies outside its declared range "
                             f"({dist.describe()})")


def draw(space: dict[str, Distribution], seed: str, pinned: set[str] = frozenset()) -> dict[str, Any]:
    """Values of the searched, unpinned hyperparameters for the configuration that ``seed`` names."""
    return {key: dist.sample(random.Random(f"{seed}/{key}")) for key, dist in sorted(space.items())
            if dist.searched and key not in pinned}


def config_seed(dataset: str, backbone: str, algorithm: str, config: int, component: str) -> str:
    """What seeds configuration ``config``'s draws for one component of one (dataset, backbone, algorithm)."""
    return f"{dataset}/{backbone}/{algorithm}/config{config}/{component}"
