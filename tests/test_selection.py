"""Selection rules pick epochs from the splits they name, ties to the earliest."""

import pytest
import torch

from oodbench.api import Environment
from oodbench.metrics import EnvMetrics
from oodbench.selection import RULES, BestEpochs
from oodbench.splits import split_environments


def _env(name, role, n=100):
    y = torch.arange(n) % 2
    return Environment(name, role, torch.zeros(n, 1, 2, 2, dtype=torch.uint8), y, y, y * 2 + y, 0.75)


def _m(acc):
    return EnvMetrics(acc, 0.0, acc, acc, {}, 10, 0.75)


@pytest.fixture
def splits():
    return split_environments([_env("train1", "train"), _env("test", "test")], 0.1, seed=0)


def test_holdout_split_sizes_and_disjointness():
    env = _env("train1", "train", n=1000)
    env.x = torch.arange(1000, dtype=torch.uint8).repeat_interleave(4).reshape(1000, 1, 2, 2)
    env.y = torch.arange(1000)
    main, holdout = split_environments([env], 0.1, seed=3)
    assert (main.part, holdout.part) == ("main", "holdout")
    assert len(main.data) == 900 and len(holdout.data) == 100
    assert set(main.data.y.tolist()).isdisjoint(holdout.data.y.tolist())
    again = split_environments([env], 0.1, seed=3)[1]
    assert torch.equal(again.data.y, holdout.data.y)
    assert not torch.equal(split_environments([env], 0.1, seed=4)[1].data.y, holdout.data.y)


def test_train_eval_subsample_is_capped_and_holdouts_stay_whole():
    main, holdout = split_environments([_env("train1", "train", n=1000)], 0.1, seed=0, train_eval_size=200)
    assert len(main.eval_data) == 200 and len(main.data) == 900
    assert len(holdout.eval_data) == 100


def test_rules_read_their_own_splits(splits):
    names = [s.name for s in splits]
    assert names == ["train1", "train1/holdout", "test", "test/holdout"]
    metrics = {"train1": _m(0.9), "train1/holdout": _m(0.8), "test": _m(0.3), "test/holdout": _m(0.2)}
    assert RULES["val"].score(1, metrics, splits) == 0.8
    assert RULES["oracle"].score(1, metrics, splits) == 0.2
    assert RULES["last"].score(7, metrics, splits) == 7


def test_best_epochs_tracks_each_rule(splits):
    best = BestEpochs(splits)
    curve = [  # (train holdout, test holdout) per epoch
        (0.80, 0.20), (0.85, 0.15), (0.85, 0.60), (0.70, 0.60),
    ]
    improved = []
    for epoch, (val, oracle) in enumerate(curve, 1):
        metrics = {"train1": _m(0.9), "train1/holdout": _m(val), "test": _m(0.5), "test/holdout": _m(oracle)}
        improved.append(best.update(epoch, metrics))
    assert best.epochs() == {"last": 4, "val": 2, "oracle": 3}
    assert improved[2] == ["last", "oracle"]  # tie on val at epoch 3 keeps epoch 2


def test_unsplit_environments_do_not_shift_the_others():
    train, test = _env("train1", "train", 200), _env("test", "test", 200)
    test.y = torch.arange(200)  # distinct labels identify which rows were held out
    source = _env("source", "source", 300)
    plain = split_environments([train, source, test], 0.1, seed=1)
    without = split_environments([train, test], 0.1, seed=1)
    assert [s.name for s in plain] == ["train1", "train1/holdout", "source", "test", "test/holdout"]
    assert torch.equal(plain[4].data.y, without[3].data.y) and len(plain[2].data) == 300
