"""Splits that do not leak, the checkpoints a training run tracks, and each rule's choice of configuration."""

import pytest
import torch

from oodbench.api import Environment
from oodbench.metrics import EnvMetrics
from oodbench.selection import RULES, BestEpochs, Candidate, choose
from oodbench.splits import split_environments


def _env(name, role, n=100):
    y = torch.arange(n) % 2
    return Environment(name, role, torch.zeros(n, 1, 2, 2, dtype=torch.uint8), y, y, y * 2 + y, 0.75)


def _m(acc):
    return EnvMetrics(acc, 0.0, acc, acc, {}, 10, 0.75)


@pytest.fixture
def splits():
    return split_environments([_env("train1", "train"), _env("test", "test")], 0.2, seed=0)


def _numbered(name, role, n):
    env = _env(name, role, n)
    env.y = torch.arange(n)  # distinct labels identify which rows each part took
    return env


def test_train_environments_split_into_main_val_and_idtest_that_share_no_sample():
    parts = split_environments([_numbered("train1", "train", 1000)], 0.2, seed=3)
    assert [(s.name, s.part) for s in parts] == [("train1", "main"), ("train1/val", "val"),
                                                 ("train1/idtest", "idtest")]
    assert [len(s.data) for s in parts] == [800, 100, 100]
    rows = [set(s.data.y.tolist()) for s in parts]
    assert rows[0].isdisjoint(rows[1]) and rows[0].isdisjoint(rows[2]) and rows[1].isdisjoint(rows[2])
    assert set().union(*rows) == set(range(1000))
    for split in parts:  # the recorded indices are the rows the part holds
        assert split.data.y.tolist() == split.index.tolist()
    again = split_environments([_numbered("train1", "train", 1000)], 0.2, seed=3)
    assert all(torch.equal(a.index, b.index) for a, b in zip(parts, again))
    assert not torch.equal(split_environments([_numbered("train1", "train", 1000)], 0.2, seed=4)[1].index,
                           parts[1].index)


def test_test_environments_split_into_a_reported_main_and_a_held_out_part():
    main, holdout = split_environments([_numbered("test", "test", 1000)], 0.1, seed=0)
    assert (main.part, holdout.part, len(main.data), len(holdout.data)) == ("main", "holdout", 900, 100)
    assert set(main.index.tolist()).isdisjoint(holdout.index.tolist())


def test_train_eval_subsample_is_capped_and_held_out_parts_stay_whole():
    main, val, idtest = split_environments([_env("train1", "train", n=1000)], 0.2, seed=0, train_eval_size=200)
    assert len(main.eval_data) == 200 and len(main.data) == 800
    assert len(val.eval_data) == 100 and len(idtest.eval_data) == 100


def test_a_holdout_too_small_to_split_is_refused():
    with pytest.raises(ValueError, match="leaves no held-out"):
        split_environments([_env("train1", "train", n=10)], 0.1, seed=0)


def test_checkpoints_read_their_own_splits(splits):
    from oodbench.selection import CHECKPOINTS

    assert [s.name for s in splits] == ["train1", "train1/val", "train1/idtest", "test", "test/holdout"]
    metrics = {"train1": _m(0.9), "train1/val": _m(0.8), "train1/idtest": _m(0.7), "test": _m(0.3),
               "test/holdout": _m(0.2)}
    assert CHECKPOINTS["best_val"].score(1, metrics, splits) == 0.8
    assert CHECKPOINTS["best_test"].score(1, metrics, splits) == 0.2
    assert CHECKPOINTS["last"].score(7, metrics, splits) == 7


def test_best_epochs_tracks_each_checkpoint(splits):
    best = BestEpochs(splits)
    curve = [(0.80, 0.20), (0.85, 0.15), (0.85, 0.60), (0.70, 0.60)]  # (train val, test holdout) per epoch
    improved = []
    for epoch, (val, held) in enumerate(curve, 1):
        metrics = {"train1": _m(0.9), "train1/val": _m(val), "train1/idtest": _m(0.99), "test": _m(0.5),
                   "test/holdout": _m(held)}
        improved.append(best.update(epoch, metrics))
    assert best.epochs() == {"last": 4, "best_val": 2, "best_test": 3}
    assert improved[2] == ["last", "best_test"]  # a tie on val at epoch 3 keeps epoch 2


def test_no_checkpoint_reads_the_idtest_part(splits):
    """ID accuracy is reported from idtest, so nothing may select on it: moving only idtest changes no pick."""
    best = BestEpochs(splits)
    for epoch, idtest in enumerate([0.1, 0.9, 0.2], 1):
        best.update(epoch, {"train1": _m(0.9), "train1/val": _m(0.5), "train1/idtest": _m(idtest),
                            "test": _m(0.5), "test/holdout": _m(0.5)})
    assert best.epochs() == {"last": 3, "best_val": 1, "best_test": 1}


def test_unsplit_environments_do_not_shift_the_others():
    train, test = _env("train1", "train", 200), _numbered("test", "test", 200)
    source = _env("source", "source", 300)
    plain = split_environments([train, source, test], 0.1, seed=1)
    without = split_environments([train, test], 0.1, seed=1)
    assert [s.name for s in plain] == ["train1", "train1/val", "train1/idtest", "source", "test", "test/holdout"]
    assert torch.equal(plain[5].data.y, without[4].data.y) and len(plain[3].data) == 300


ROLES = {"v": ("train", "val"), "h": ("test", "holdout"), "t": ("test", "main")}


def _candidate(config, epochs, accs):
    return Candidate(config, f"c{config}", epochs, accs, ROLES)


def test_rules_choose_configurations_on_their_own_splits():
    # config 0: best val 0.8 at epoch 1, test holdout at its last epoch 0.3; config 1: val 0.7, holdout 0.6
    zero = _candidate(0, {"last": 2, "best_val": 1, "best_test": 1},
                      {1: {"v": 0.8, "h": 0.9, "t": 0.1}, 2: {"v": 0.6, "h": 0.3, "t": 0.2}})
    one = _candidate(1, {"last": 2, "best_val": 2, "best_test": 2},
                     {1: {"v": 0.1, "h": 0.1, "t": 0.1}, 2: {"v": 0.7, "h": 0.6, "t": 0.5}})
    picks = {name: choose(rule, [one, zero]) for name, rule in RULES.items()}
    assert {name: (p.candidate.config, p.epoch) for name, p in picks.items()} == {
        "val": (0, 1), "oracle": (1, 2), "oracle_epoch": (0, 1), "last": (0, 2)}
    assert picks["val"].score == 0.8 and picks["oracle"].score == 0.6 and picks["last"].score is None


def test_ties_go_to_the_lowest_configuration_and_last_needs_the_defaults():
    same = {1: {"v": 0.5, "h": 0.5, "t": 0.5}}
    epochs = {"last": 1, "best_val": 1, "best_test": 1}
    assert choose(RULES["val"], [_candidate(3, epochs, same), _candidate(2, epochs, same)]).candidate.config == 2
    assert choose(RULES["last"], [_candidate(3, epochs, same)]) is None
