"""Held-out splits: every train and test environment is cut into a main part and a holdout.

Train environments fit on ``main`` and validate on ``holdout`` (training-domain
validation, the ``val`` selection rule, and the in-distribution accuracy).
Test environments report on ``main`` and select on ``holdout`` (the ``oracle``
rule, DomainBed's test-domain validation), so no reported number was also
used to pick the epoch that produced it. The training curve of a train
environment's ``main`` part is measured on a fixed seeded subsample
(``train_eval_size``): evaluating all of it every epoch costs as much as the
epoch itself, and its ``n`` is stored with the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from oodbench.api import Environment

SPLIT_ROLES = ("train", "test")


@dataclass
class Split:
    """One evaluated piece of an environment."""

    name: str
    env: str
    role: str
    part: str
    data: Environment
    eval_data: Environment


def split_environments(envs: list[Environment], holdout_fraction: float, seed: int,
                       train_eval_size: int = 0) -> list[Split]:
    """Cut train/test environments into main + holdout with a seeded permutation; others stay whole.

    ``train_eval_size`` > 0 caps how many samples of a train environment's main
    part are evaluated per epoch (0 evaluates all of them).
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    generator = torch.Generator().manual_seed(seed)
    splits: list[Split] = []
    for env in envs:
        if env.role not in SPLIT_ROLES:  # draws nothing, so including a source env changes no other split
            splits.append(Split(env.name, env.name, env.role, "main", env, env))
            continue
        n_holdout = int(round(len(env) * holdout_fraction))
        order = torch.randperm(len(env), generator=generator)
        holdout, main = order[:n_holdout].sort().values, order[n_holdout:].sort().values
        main_env = env.subset(main) if n_holdout else env
        eval_env = main_env
        if env.role == "train" and 0 < train_eval_size < len(main_env):
            eval_env = main_env.subset(torch.randperm(len(main_env), generator=generator)[:train_eval_size].sort().values)
        splits.append(Split(env.name, env.name, env.role, "main", main_env, eval_env))
        if n_holdout:
            holdout_env = env.subset(holdout)
            splits.append(Split(f"{env.name}/holdout", env.name, env.role, "holdout", holdout_env, holdout_env))
    return splits
