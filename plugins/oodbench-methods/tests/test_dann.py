"""DANN's gradient reversal, its schedule, which data each loss sees, in both ``domains`` modes."""

import math

import pytest
import torch
import torch.nn.functional as F

from oodbench.api import Batch, make_groups
from oodbench_methods.dann import DANN, reversal_strength, reverse_gradient
from toys import TinyConv, batch, task


def test_gradient_reversal_is_identity_forward_and_scaled_negation_backward():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    out = reverse_gradient(x, 0.3)
    assert torch.equal(out, x)
    (out * torch.tensor([1.0, 2.0, 4.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.3, -0.6, -1.2]))


def test_reversal_strength_schedule():
    assert reversal_strength(0.0) == 0.0
    assert reversal_strength(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert 0.9999 < reversal_strength(1.0) < 1.0


def _algo():
    torch.manual_seed(0)
    return DANN(TinyConv, task(sources=("source",)), dict(DANN.defaults, anneal_steps=4))


def _batches(target_labels_flipped=False):
    train = [batch(8, 0, 1), batch(8, 1, 2)]
    if target_labels_flipped:
        train = [Batch(b.x, 1 - b.y, b.env, b.group, b.attribute) for b in train]
    return [*train, batch(8, 2, 3)]


def test_target_labels_are_never_used():
    plain, flipped = _algo(), _algo()
    assert plain.update(_batches()) == flipped.update(_batches(target_labels_flipped=True))
    for a, b in zip(plain.parameters(), flipped.parameters()):
        assert torch.equal(a, b)


def test_source_labels_drive_the_classification_loss():
    algo = _algo()
    source = _batches()[2]
    expected = F.cross_entropy(algo.model(source.x), source.y).item()
    assert algo.update(_batches())["classification"] == pytest.approx(expected, rel=1e-5)


def test_alpha_follows_progress_and_the_step_count_is_checkpointed():
    algo = _algo()
    alphas = [algo.update(_batches())["alpha"] for _ in range(6)]
    assert alphas == pytest.approx([reversal_strength(min(s / 4, 1.0)) for s in range(6)])
    assert int(algo.state_dict()["steps"]) == 6


def test_missing_source_is_a_clear_error():
    with pytest.raises(ValueError, match="source"):
        _algo().update(_batches()[:2])


def _envs_algo(envs=("e0", "e1"), **hparams):
    torch.manual_seed(0)
    return DANN(TinyConv, task(envs=envs), dict(DANN.defaults, domains="envs", anneal_steps=4, **hparams))


def test_envs_mode_needs_env_ids_and_no_source():
    assert DANN.needs(dict(DANN.defaults)) == {"source"}
    assert DANN.needs(dict(DANN.defaults, domains="envs")) == {"env"}


def test_envs_mode_trains_on_the_training_labels_without_a_source_batch():
    algo = _envs_algo()
    train = [batch(8, 0, 1), batch(8, 1, 2)]
    x, y = torch.cat([b.x for b in train]), torch.cat([b.y for b in train])
    expected = F.cross_entropy(algo.model(x), y).item()
    stats = algo.update(train)
    assert stats["classification"] == pytest.approx(expected, rel=1e-5)
    assert all(math.isfinite(v) for v in stats.values())


def test_envs_mode_domain_head_tells_the_training_environments_apart():
    algo = _envs_algo(envs=("e0", "e1", "e2"))
    train = [batch(8, e, e + 1) for e in range(3)]
    assert algo.domain_head[-1].out_features == 3
    x, env = torch.cat([b.x for b in train]), torch.cat([b.env for b in train])
    expected = F.cross_entropy(algo.domain_head(algo.model.featurizer(x)), env).item()
    assert algo.update(train)["domain"] == pytest.approx(expected, rel=1e-5)


def test_lambda_domain_weighs_the_domain_loss():
    stats = _envs_algo(lambda_domain=0.25).update([batch(8, 0, 1), batch(8, 1, 2)])
    assert stats["loss"] == pytest.approx(stats["classification"] + 0.25 * stats["domain"], rel=1e-5)


def test_bad_domains_and_a_single_environment_are_clear_errors():
    with pytest.raises(ValueError, match="domains"):
        _envs_algo(envs=("e0",))
    with pytest.raises(ValueError, match="domains"):
        DANN(TinyConv, task(), dict(DANN.defaults, domains="targets"))


def _shifted_batch(env, g):
    """Label in channel 0, environment in channel 1: the environment is easy to read and useless for the label."""
    y = torch.randint(2, (32,), generator=g)
    x = torch.rand(32, 2, 4, 4, generator=g)
    x[:, 0] += y[:, None, None].float()
    x[:, 1] += float(env)
    return Batch(x, y, torch.full((32,), env), make_groups(y, y, 2), y)


def _late_losses(anneal_steps, seed, steps=150):
    """Mean classification and domain losses over the last quarter of a short envs-mode run on shifted data."""
    torch.manual_seed(seed)
    algo = DANN(lambda: TinyConv(hidden=16), task(),
                dict(DANN.defaults, domains="envs", anneal_steps=anneal_steps, lr=1e-2))
    g = torch.Generator().manual_seed(seed)
    late = [algo.update([_shifted_batch(0, g), _shifted_batch(1, g)]) for _ in range(steps)][-steps // 4:]
    return tuple(sum(s[key] for s in late) / len(late) for key in ("classification", "domain"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reversed_gradient_keeps_the_domain_head_from_telling_environments_apart(seed):
    """Same head, data and steps; only alpha differs (about 1 after one step vs about 0 throughout).

    Without reversal the head learns the environment (loss well under log 2);
    with it the featurizer works against the head, which stays near chance,
    while the label is learned either way.
    """
    (reversed_label, reversed_domain), (plain_label, plain_domain) = _late_losses(1, seed), _late_losses(10 ** 7, seed)
    assert reversed_label < 0.1 and plain_label < 0.1
    assert plain_domain < 0.3
    assert reversed_domain > 0.3 and reversed_domain > 2 * plain_domain


def _layer_algo(layer):
    torch.manual_seed(0)
    return DANN(TinyConv, task(sources=("source",)), dict(DANN.defaults, anneal_steps=4, domain_layer=layer))


def test_domain_layer_judges_every_location_of_the_feature_map_it_reads():
    algo = _layer_algo(2)
    assert isinstance(algo.domain_head[0], torch.nn.Conv2d)
    train, source = _batches()[:2], _batches()[2]
    conv_out = algo.model.featurizer[1](algo.model.featurizer[0](torch.cat([source.x, *(b.x for b in train)])))
    logits = algo.domain_head(conv_out)
    n = len(source.y)
    per_location = F.log_softmax(logits, dim=1)
    expected = -(per_location[:n, 0].mean() + per_location[n:, 1].mean())
    assert algo.update(_batches())["domain"] == pytest.approx(expected.item(), rel=1e-5)


def test_domain_layer_confines_the_reversed_gradient_to_the_layers_below_it():
    algo = _layer_algo(2)
    _, domain = algo.source_losses(_batches(), alpha=1.0)
    domain.backward()
    assert algo.model.featurizer[3].weight.grad is None and algo.model.classifier.weight.grad is None
    assert algo.model.featurizer[0].weight.grad.abs().sum() > 0
    whole = _layer_algo(0)
    whole.source_losses(_batches(), alpha=1.0)[1].backward()
    assert whole.model.featurizer[3].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("layer", [5, -1])
def test_a_domain_layer_outside_the_featurizer_is_a_clear_error(layer):
    with pytest.raises(ValueError, match=r"domain_layer .*allowed 0\.\.4"):
        _layer_algo(layer)


def test_prediction_condition_puts_each_predicted_class_in_its_own_block():
    torch.manual_seed(0)
    algo = DANN(TinyConv, task(sources=("source",)), dict(DANN.defaults, condition="prediction"))
    assert algo.domain_head[0].in_features == 2 * algo.model.n_features
    x = _batches()[2].x
    features = algo.model.featurizer(x)
    probs = F.softmax(algo.model.classifier(features), dim=1)
    logits = algo._domain_logits(features, features, torch.zeros(len(x), dtype=torch.long), alpha=1.0)
    by_hand = algo.domain_head(torch.cat([probs[:, :1] * features, probs[:, 1:] * features], dim=1))
    assert torch.allclose(logits, by_hand, atol=1e-6)


def test_prediction_condition_sends_no_domain_gradient_into_the_label_head():
    torch.manual_seed(0)
    algo = DANN(TinyConv, task(sources=("source",)), dict(DANN.defaults, condition="prediction"))
    algo.source_losses(_batches(), alpha=1.0)[1].backward()
    assert algo.model.classifier.weight.grad is None
    assert algo.model.featurizer[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="condition"):
        DANN(TinyConv, task(sources=("source",)), dict(DANN.defaults, condition="labels"))


def test_label_condition_uses_the_true_labels_target_included():
    torch.manual_seed(0)
    algo = DANN(TinyConv, task(sources=("source",)), dict(DANN.defaults, condition="label"))
    x = _batches()[2].x
    features = algo.model.featurizer(x)
    y = torch.tensor([0, 1] * 4)
    by_hand = algo.domain_head(torch.cat([(y == 0)[:, None] * features, (y == 1)[:, None] * features], dim=1))
    assert torch.allclose(algo._domain_logits(features, features, y, alpha=1.0), by_hand, atol=1e-6)
    plain, flipped = (DANN(TinyConv, task(sources=("source",)), dict(DANN.defaults, condition="label"))
                      for _ in range(2))
    flipped.load_state_dict(plain.state_dict())
    assert plain.update(_batches()) != flipped.update(_batches(target_labels_flipped=True))
