"""The epoch loop's mechanics on tiny tensors: slicing, source minibatches, non-finite statistics."""

import pytest
import torch

from oodbench.api import Algorithm, Environment
from oodbench.train import train_epoch


def _env(name, role, n, offset=0):
    y = torch.arange(n) % 2
    x = (torch.arange(n) + offset).float().view(n, 1, 1, 1)
    return Environment(name, role, x, y, y, y * 2 + y)


class Recorder(Algorithm):
    name = "recorder"

    def __init__(self, result=0.0):
        super().__init__(lambda: None, None, {})
        self.calls = []
        self.result = result

    def update(self, batches):
        self.calls.append([(b.x.flatten().tolist(), b.env.unique().tolist()) for b in batches])
        return {"loss": self.result}


def test_each_step_gets_one_slice_per_environment_then_source_ones():
    envs = [_env("a", "train", 10), _env("b", "train", 12, offset=100)]
    source = [_env("s", "source", 3, offset=1000)]
    algo = Recorder()
    stats = train_epoch(algo, envs, 4, torch.Generator().manual_seed(0), source=source)
    assert stats == {"loss": 0.0}
    assert len(algo.calls) == 2  # the smallest training environment (10) // 4
    seen_a = [v for call in algo.calls for v in call[0][0]]
    assert len(set(seen_a)) == 8 and all(0 <= v < 10 for v in seen_a)  # no repeats within an epoch
    for call in algo.calls:
        assert [ids for _, ids in call] == [[0], [1], [2]]
        source_values = call[2][0]
        assert len(source_values) == 4 and set(source_values) <= {1000.0, 1001.0, 1002.0}  # wraps around


def test_a_non_finite_statistic_stops_the_epoch():
    algo = Recorder(result=float("inf"))
    with pytest.raises(FloatingPointError, match="loss became inf at epoch 3, step 1"):
        train_epoch(algo, [_env("a", "train", 8)], 4, torch.Generator(), epoch=3)
