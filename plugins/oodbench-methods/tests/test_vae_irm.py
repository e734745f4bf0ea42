"""vae_irm: the KL term, stage 1's three losses, the switch to IRM on the content path, the deployable network."""

import math

import pytest
import torch
import torch.nn.functional as F

from oodbench_methods.penalties import irm_penalty
from oodbench_methods.vae_irm import VAEIRM, ContentClassifier, gaussian_kl
from toys import TinyConv, batch, task


def make(**hparams):
    torch.manual_seed(0)
    return VAEIRM(TinyConv, task(), dict(VAEIRM.defaults, **hparams))


def test_gaussian_kl_matches_the_closed_form_and_vanishes_at_the_prior():
    mean, log_var = torch.tensor([[0.5, -1.0]]), torch.tensor([[math.log(4.0), 0.0]])
    # per dimension: 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)
    expected = 0.5 * (0.25 + 4 - 1 - math.log(4)) + 0.5 * (1 + 1 - 1 - 0)
    assert gaussian_kl(mean, log_var).item() == pytest.approx(expected)
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).eq(0).all()


def test_the_deployable_network_is_encoder_content_mean_classifier():
    algo = make()
    net = algo.network()
    assert isinstance(net, ContentClassifier) and net.n_features == VAEIRM.defaults["content_dim"]
    x = torch.rand(5, 2, 4, 4)
    hidden = net.featurizer[0](x)
    assert torch.equal(net(x), net.classifier(net.featurizer[1](hidden)))
    assert torch.equal(algo.predict(x), net(x))
    names = {name for name, _ in net.named_parameters()}
    assert not any("decoder" in n or "style" in n for n in names)  # the VAE's other parts are not deployed


def test_stage_one_trains_the_vae_and_the_classifier_on_the_content():
    algo = make(vae_steps=2)
    batches = [batch(8, 0, 1), batch(8, 1, 2)]
    decoder = [p.detach().clone() for p in algo.decoder.parameters()]
    stats = algo.update(batches)
    assert stats["stage"] == 1.0 and {"reconstruction", "kl", "classification"} <= set(stats)
    assert stats["loss"] == pytest.approx(stats["reconstruction"] + stats["kl"] + stats["classification"], rel=1e-5)
    assert any(not torch.equal(b, p) for b, p in zip(decoder, algo.decoder.parameters()))


def test_after_vae_steps_only_the_content_path_moves_under_the_irm_loss():
    algo = make(vae_steps=1, finetune_lr=1e-3)
    batches = [batch(8, 0, 1), batch(8, 1, 2)]
    algo.update(batches)
    assert algo.stage == 2
    frozen = [p.detach().clone() for m in (algo.decoder, algo.style, algo.content_log_var) for p in m.parameters()]
    content = [p.detach().clone() for p in algo.network().parameters()]
    logits = [algo.network()(b.x) for b in batches]
    risk = sum(F.cross_entropy(z, b.y) for z, b in zip(logits, batches)) / 2
    penalty = sum(irm_penalty(z, b.y) for z, b in zip(logits, batches)) / 2
    stats = algo.update(batches)
    assert stats["stage"] == 2.0
    assert stats["risk"] == pytest.approx(risk.item(), rel=1e-5)
    assert stats["penalty"] == pytest.approx(penalty.item(), rel=1e-4, abs=1e-8)
    assert stats["loss"] == pytest.approx((risk.item() + 100.0 * penalty.item()) / 100.0, rel=1e-4, abs=1e-8)
    after = [p for m in (algo.decoder, algo.style, algo.content_log_var) for p in m.parameters()]
    assert all(torch.equal(b, p) for b, p in zip(frozen, after))
    assert any(not torch.equal(b, p) for b, p in zip(content, algo.network().parameters()))


def test_the_fine_tuning_optimiser_holds_the_content_path_at_the_small_learning_rate():
    algo = make(vae_steps=1, finetune_lr=1e-6)
    stage_one = algo.optimizer
    algo.update([batch(8, 0, 1), batch(8, 1, 2)])
    assert algo.optimizer is stage_one
    algo.update([batch(8, 0, 1), batch(8, 1, 2)])
    (group,) = algo.optimizer.param_groups
    assert algo.optimizer is not stage_one and group["lr"] == 1e-6
    assert {id(p) for p in group["params"]} == {id(p) for p in algo.network().parameters()}
    assert int(algo.steps) == 2 and "steps" in algo.state_dict()


def test_needs_environments_and_refuses_an_unknown_estimate():
    assert VAEIRM.needs(dict(VAEIRM.defaults)) == {"env"}
    with pytest.raises(ValueError, match="penalty_estimate 'both' not in"):
        make(penalty_estimate="both")


@pytest.mark.slow
def test_one_epoch_cli_run_goes_through_both_stages(tmp_path):
    import sqlite3

    from oodbench.cli import main
    from oodbench.testing import small_dataset

    run = tmp_path / "run"
    with small_dataset(tmp_path / "specs", "digit_color_shift_small", "digit_color_shift"):
        assert main(["run", "-d", "digit_color_shift_small", "-b", "lenet", "-a", "vae_irm", "--epochs", "1",
                     "--set", "vae_steps=6", "--set", "batch_size=32", "--set", "train_eval_size=200",
                     "--out", str(run)]) == 0
    db = sqlite3.connect(run / "results.sqlite")
    stats = dict(db.execute("SELECT name, value FROM train_stats"))
    assert 1.0 < stats["stage"] < 2.0  # 15 steps of 32 of 500 images: 6 VAE steps, then IRM
    assert {"reconstruction", "kl", "classification", "risk", "penalty"} <= set(stats)
