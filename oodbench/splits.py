"""Held-out splits that do not leak: what each selection rule selects on is never what a table reports.

Every train environment is cut into ``main`` (fitted on), ``val`` (the
training-domain validation that the ``val`` rule selects on) and ``idtest``
(the in-distribution accuracy a report shows); the held-out fraction is
halved between ``val`` and ``idtest``. Every test environment is cut into
``main`` (reported) and ``holdout`` (what the test-domain oracles select
on). The training curve of a train environment's ``main`` part is measured
on a fixed seeded subsample (``train_eval_size``): evaluating all of it every
epoch costs as much as the epoch itself, and its ``n`` is stored with the
metrics. Each split keeps the indices it took from its environment, so tests
can check that no two parts share a sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from oodbench.api import Environment

SPLIT_ROLES = ("train", "test")


@dataclass
class Split:
    """One evaluated piece of an environment; ``index`` are its rows in the environment."""

    name: str
    env: str
    role: str
    part: str
    data: Environment
    eval_data: Environment
    index: torch.Tensor


def _part(env: Environment, part: str, index: torch.Tensor) -> Split:
    data = env.subset(index)
    return Split(f"{env.name}/{part}", env.name, env.role, part, data, data, index)


def split_environments(envs: list[Environment], holdout_fraction: float, seed: int,
                       train_eval_size: int = 0) -> list[Split]:
    """Cut train/test environments with a seeded permutation; other roles stay whole.

    ``train_eval_size`` > 0 caps how many samples of a train environment's main
    part are evaluated per epoch (0 evaluates all of them).
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    generator = torch.Generator().manual_seed(seed)
    splits: list[Split] = []
    for env in envs:
        if env.role not in SPLIT_ROLES:  # draws nothing, so including a source env changes no other split
            splits.append(Split(env.name, env.name, env.role, "main", env, env, torch.arange(len(env))))
            continue
        n_holdout = int(round(len(env) * holdout_fraction))
        if n_holdout < 2 or n_holdout >= len(env):
            raise ValueError(f"environment {env.name!r} ({len(env)} samples): holdout_fraction {holdout_fraction} "
                             f"leaves no held-out or no main part")
        order = torch.randperm(len(env), generator=generator)
        held, main = order[:n_holdout], order[n_holdout:].sort().values
        main_env = env.subset(main)
        eval_env = main_env
        if env.role == "train" and 0 < train_eval_size < len(main_env):
            eval_env = main_env.subset(torch.randperm(len(main_env), generator=generator)[:train_eval_size].sort().values)
        splits.append(Split(env.name, env.name, env.role, "main", main_env, eval_env, main))
        if env.role == "train":
            half = n_holdout // 2
            splits.append(_part(env, "val", held[:half].sort().values))
            splits.append(_part(env, "idtest", held[half:].sort().values))
        else:
            splits.append(_part(env, "holdout", held.sort().values))
    return splits
