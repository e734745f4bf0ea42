"""The batched crossbar path against memtorch's own forward (per sample for Conv2d): the same numbers.

Each patched layer is fed the activations it sees inside the network, once
through ``layer(x)`` (the batched path ``accelerate`` installed) and once
through ``type(layer).forward`` (memtorch's loop over samples and its C++
tiled inference). The one thing allowed to differ is float32 rounding inside
a tile's dot products (one matrix product here, one matrix-vector product
per row there). Without an ADC that shows as last-bit differences; with one,
the ADC absorbs them: on this machine every case is bit-identical, and the
test demands that of 99 % of the outputs, so a BLAS that rounds one dot
product differently cannot fail it while a wrong grouping, scale or tile
order (which moves most outputs) does.
"""

import pytest
import torch
from memristor_toys import SHAPE, images
from torch import nn

from oodbench_memristor.conversion import Device, convert, memtorch_layers
from oodbench_memristor.crossbar import conv2d_forward, linear_forward
from oodbench_memristor.faults import FaultsTarget

from oodbench.builtin.cnn import CNN

TILES = {"tile_rows": 16, "tile_cols": 8}  # several input and output tiles, and padded tile columns
CASES = {
    "8-bit linear ADC": ({}, False),
    "stuck devices in the tile padding": ({}, True),
    "log ADC, 20 % overflow": ({"quant_method": "log", "adc_overflow_rate": 0.2}, True),
    "overflow index past the real columns": ({"adc_overflow_rate": 0.6}, False),
    "no tiles": ({"tile_rows": 0, "tile_cols": 0}, False),
    "no ADC": ({"adc_bits": 0}, False),
    "inputs scaled to 0.3 V": ({"max_input_voltage": 0.3}, False),
}


class PaddedNet(nn.Module):
    """A padded, strided convolution (the default CNN has neither) and two linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(SHAPE[0], 3, 3, stride=2, padding=1)
        self.head = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 20), nn.ReLU(), nn.Linear(20, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x))


def networks() -> list[nn.Module]:
    torch.manual_seed(0)
    return [CNN(SHAPE, 2, width=4, hidden=16), PaddedNet()]


def layer_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    hooks = [layer.register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, args[0]))
             for name, layer in memtorch_layers(model)]
    model(x)
    for hook in hooks:
        hook.remove()
    return seen


def assert_same_reads(batched: torch.Tensor, reference: torch.Tensor, adc: bool, where: str) -> None:
    assert batched.shape == reference.shape, where
    scale = reference.abs().max().item()
    if adc:
        identical = (batched == reference).float().mean().item()
        assert identical >= 0.99, f"{where}: only {identical:.1%} of outputs identical"
        torch.testing.assert_close(batched, reference, rtol=0, atol=0.05 * scale, msg=where)
    else:
        torch.testing.assert_close(batched, reference, rtol=1e-5, atol=1e-6 * scale, msg=where)


@pytest.mark.parametrize("case", CASES)
def test_each_layer_matches_memtorchs_own_forward(case):
    hparams, faults = CASES[case]
    hparams = TILES | hparams
    x = images(5, seed=1)
    for network in networks():
        nonidealities = FaultsTarget(**hparams).nonidealities() if faults else None
        model = convert(network, Device.from_hparams(hparams), seed=0, nonidealities=nonidealities)
        with torch.no_grad():
            inputs = layer_inputs(model, x)
            assert len(inputs) == (4 if isinstance(network, CNN) else 3)
            for name, layer in memtorch_layers(model):
                assert layer.forward.__func__ in (conv2d_forward, linear_forward), f"{name} is not on the batched path"
                batched, memtorchs = layer(inputs[name]), type(layer).forward(layer, inputs[name])
                assert_same_reads(batched, memtorchs, adc=hparams.get("adc_bits") != 0, where=f"{case}: layer {name}")


def test_the_adc_really_quantises_and_tiles_really_split_the_sums():
    """Guards the comparison above: ADC and tiling change the output, so equal outputs mean equal physics."""
    network = networks()[0]
    x = images(4, seed=2)
    with torch.no_grad():
        outputs = {name: convert(network, Device.from_hparams(TILES | hparams), seed=0)(x)
                   for name, hparams in {"adc": {}, "no adc": {"adc_bits": 0}, "4-bit": {"adc_bits": 4}}.items()}
    assert not torch.equal(outputs["adc"], outputs["no adc"])
    assert not torch.equal(outputs["adc"], outputs["4-bit"])


def test_unscaled_inputs_make_each_sample_independent_of_its_batch():
    network = networks()[1]
    model = convert(network, Device.from_hparams(TILES), seed=0)
    x = images(6, seed=3)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
    assert torch.equal(together, alone)
