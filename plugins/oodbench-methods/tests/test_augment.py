"""augment: RandomColor recovers the ink and redraws far-apart colors per image; the v2 pipeline; refusals."""

import pytest
import torch

from oodbench.api import Batch, Task
from oodbench_methods.augment import Augment, RandomColor, color_pairs, contrast, ink, parse_transforms
from toys import TinyConv


def rgb_task(channels=3, size=8):
    return Task("rgb_toy", (channels, size, size), 2, ("e0", "e1"), "color", ("red", "green"))


def rendered(strokes, digit, background):
    """Images [N, 3, H, W] drawn as the dataset specs draw them: ink * digit + (1 - ink) * background."""
    return strokes[:, None] * digit[:, :, None, None] + (1 - strokes[:, None]) * background[:, :, None, None]


def strokes(n=4, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    ink = torch.zeros(n, size, size)
    ink[:, 2:6, 3:5] = torch.rand(n, 4, 2, generator=g) * 0.5 + 0.5  # a stroke; the border stays empty
    ink[:, 3, 3] = 1.0  # full ink somewhere, as every MNIST digit has
    return ink


@pytest.mark.parametrize("digit, background", [
    ([1.0, 0.0, 0.0], [0.0, 0.0, 0.0]),  # red on black (training)
    ([1.0, 1.0, 0.0], [1.0, 1.0, 1.0]),  # yellow on white (test 1)
    ([0.2, 0.3, 0.9], [0.8, 0.6, 0.1]),  # a random pair (test_random)
])
def test_ink_is_recovered_whatever_the_two_colors(digit, background):
    s = strokes()
    x = rendered(s, torch.tensor([digit] * 4), torch.tensor([background] * 4))
    assert torch.allclose(ink(x)[:, 0], s, atol=1e-5)


def test_random_color_keeps_the_shape_and_draws_a_far_apart_pair_per_image():
    torch.manual_seed(0)
    s = strokes(64)
    x = rendered(s, torch.tensor([[0.0, 1.0, 0.0]] * 64), torch.zeros(64, 3))
    out = RandomColor(0.4)(x)
    assert torch.allclose(ink(out)[:, 0], s, atol=1e-4)
    background, digit = out[:, :, 0, 0], out[:, :, 3, 3]
    assert (contrast(digit, background) >= 0.4 - 1e-6).all()
    assert len({tuple(c.tolist()) for c in digit}) == 64  # every image its own digit color


def test_color_pairs_redraw_until_far_enough():
    torch.manual_seed(0)
    digit, background = color_pairs(2000, 0.6, torch.device("cpu"))
    assert (contrast(digit, background) >= 0.6).all()
    assert digit.min() >= 0 and digit.max() <= 1


def test_transforms_are_parsed_in_a_fixed_order_and_unknown_ones_refused():
    assert parse_transforms("erase+color+crop") == ("color", "crop", "erase")
    with pytest.raises(ValueError, match=r"unknown part\(s\) 'blur'.*allowed: color, grayscale, crop, erase"):
        parse_transforms("color+blur")


@pytest.mark.parametrize("transforms", ["color", "grayscale", "color+crop"])
def test_color_and_grayscale_refuse_images_that_are_not_rgb(transforms):
    with pytest.raises(ValueError, match=r"augment: the (color|grayscale|color and grayscale) transforms? needs? 3-channel RGB images; "
                       r"dataset rgb_toy has 2 channel"):
        Augment(lambda: TinyConv(channels=2, size=8), rgb_task(channels=2), dict(Augment.defaults, transforms=transforms))


def test_crop_and_erase_alone_work_on_any_channel_count():
    algo = Augment(lambda: TinyConv(channels=2, size=8), rgb_task(channels=2),
                   dict(Augment.defaults, transforms="crop+erase"))
    assert algo.augment(torch.rand(5, 2, 8, 8)).shape == (5, 2, 8, 8)


def test_grayscale_at_p_1_leaves_equal_channels():
    algo = Augment(lambda: TinyConv(channels=3, size=8), rgb_task(),
                   dict(Augment.defaults, transforms="color+grayscale", grayscale_p=1.0))
    out = algo.augment(rendered(strokes(6), torch.rand(6, 3), torch.rand(6, 3)))
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])


def test_groups_draw_their_own_crop():
    torch.manual_seed(0)
    algo = Augment(lambda: TinyConv(channels=3, size=8), rgb_task(),
                   dict(Augment.defaults, transforms="crop", crop_scale=0.2, group_size=1))
    x = torch.rand(1, 3, 8, 8).expand(16, -1, -1, -1)
    out = algo.augment(x)
    assert len({tuple(o.flatten().tolist()) for o in out}) > 8


def test_one_step_trains_on_augmented_images_and_predict_sees_the_originals():
    torch.manual_seed(0)
    algo = Augment(lambda: TinyConv(channels=3, size=8), rgb_task(), dict(Augment.defaults))
    y = torch.tensor([0, 1, 0, 1])
    x = rendered(strokes(4), torch.tensor([[1.0, 0.0, 0.0]] * 4), torch.zeros(4, 3))
    seen = []
    algo.model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    before = [p.detach().clone() for p in algo.network().parameters()]
    algo.update([Batch(x, y, torch.zeros(4, dtype=torch.long), y, y)])
    assert not torch.allclose(seen[0], x) and torch.allclose(ink(seen[0]), ink(x), atol=1e-4)
    assert any(not torch.equal(b, p) for b, p in zip(before, algo.network().parameters()))
    assert torch.equal(algo.predict(x), algo.network()(x))


def test_refuses_out_of_range_settings():
    with pytest.raises(ValueError, match="min_contrast 0.9 not in"):
        Augment(lambda: TinyConv(channels=3, size=8), rgb_task(), dict(Augment.defaults, min_contrast=0.9))
    with pytest.raises(ValueError, match="group_size 0"):
        Augment(lambda: TinyConv(channels=3, size=8), rgb_task(), dict(Augment.defaults, group_size=0))


@pytest.mark.slow
def test_one_epoch_cli_run_with_both_seed_training_sets(tmp_path, capsys):
    from oodbench.cli import main
    from oodbench.store import Store
    from oodbench.testing import small_dataset

    run = tmp_path / "run"
    with small_dataset(tmp_path / "specs", "digit_color_shift_small", "digit_color_shift"):
        assert main(["run", "-d", "digit_color_shift_small", "-b", "lenet", "-a", "augment", "--epochs", "1",
                     "--set", "transforms=color,color+grayscale+crop+erase", "--set", "batch_size=256",
                     "--set", "train_eval_size=200", "--out", str(run)]) == 0
    with Store.in_dir(run) as store:
        cells = store.cells()
        assert [c["status"] for c in cells] == ["done", "done"]
        assert {c["hparams"]["algorithm"]["transforms"] for c in cells} == {"color", "color+grayscale+crop+erase"}
    assert "transforms=color+grayscale+crop+erase" in capsys.readouterr().out
    # on ColoredMNIST's two channels the color transform is refused, and the cell fails with that reason
    assert main(["run", "-d", "colored_mnist", "-b", "cnn", "-a", "augment", "--epochs", "1",
                 "--out", str(tmp_path / "refused")]) == 1
    assert "the color transform needs 3-channel RGB images" in capsys.readouterr().out
