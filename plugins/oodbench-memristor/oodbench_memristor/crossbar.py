"""memtorch's crossbar inference, batched: the same physics on a whole batch at once.

memtorch's ``Conv2d.forward`` loops over the batch in Python and, with tiles
and an ADC, its C++ ``tiled_inference`` loops over every unfolded input row,
multiplying one input tile by one crossbar tile and quantising that tile's
output vector before summing: 37 ms per image for the default CNN here
(12 minutes for a 20 000-image environment). Here each input tile meets
its crossbar tiles once for the whole batch (one matrix product for
``Linear``, one convolution with the tile's conductances as kernel for
``Conv2d``) and the ADC quantises all tile outputs at once, each vector on
its own scale, as ``memtorch_bindings.quantize`` does for one vector. Only
the float32 rounding inside a tile's dot products may differ
(``tests/test_memristor_batched.py`` compares both paths).

Kept from memtorch on purpose, because it is memtorch's model:
- with ``max_input_voltage`` set, inputs are scaled per sample in ``Conv2d``
  but per batch in ``Linear`` (``naive_scale`` sees the whole batch there);
- the ADC scale of a tile's output sees the whole tile width, padded columns
  included; an all-equal vector passes the ADC unchanged;
- without tiles, one ADC scale covers a whole sample (``Conv2d``) or the
  whole batch (``Linear``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import MethodType

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHUNK_ROWS = 1 << 17
"""Rows per tile product: bounds the ADC's full-width temporaries to about 64 MB."""

CHUNK_VALUES = 1 << 19
"""Output values per tile convolution (2 MB of float32): small enough that the ADC reads them from cache, which
made the default CNN's convolutions 3x faster than chunks of 64 MB."""

QUANT_METHODS = ("linear", "log")
"""memtorch's ADC modes; its layers silently skip the ADC for any other value, so these are checked."""


def adc(values: torch.Tensor, bits: int, overflow_rate: float, method: str | None, padding: int = 0,
        dim: int = 1) -> torch.Tensor:
    """memtorch's ADC on every vector of ``values`` along ``dim``, each independently, like
    ``memtorch_bindings.quantize``: ``adc_scale``, then ``quantize``."""
    if method is None:
        return values
    scale, flat = adc_scale(values, bits, overflow_rate, padding, dim)
    return quantize(values, scale, flat, bits, method)


def adc_scale(values: torch.Tensor, bits: int, overflow_rate: float, padding: int = 0,
              dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Each vector's ADC step (log2) and whether it is all-equal (it then passes unchanged), kept along ``dim``.

    Each vector is one read of a tile's output. The step is a power of two
    set by the vector's largest magnitude (or the one at ``overflow_rate``
    from the top), ``bits`` levels around zero. ``padding`` counts the tile's
    further columns, which nobody reads but whose zero currents the scale
    sees; a caller whose padded columns carry current passes them inside
    ``values`` instead.
    """
    low, high = values.amin(dim, keepdim=True), values.amax(dim, keepdim=True)  # torch.aminmax is 10x slower here
    if padding:
        low, high = low.clamp(max=0), high.clamp(min=0)
    n = values.shape[dim] + padding
    if overflow_rate == 0:
        top = torch.maximum(high, -low)
    else:
        index = min(math.floor(float(np.float32(overflow_rate) * np.float32(n)) + 0.5), n - 1)
        top = (values.abs().topk(index + 1, dim=dim).values.narrow(dim, index, 1) if index < values.shape[dim]
               else torch.zeros_like(high))  # past the real columns only padded zeros are left
    return 1 - bits + torch.ceil(torch.log2(top + 1e-12)), high == low


def quantize(values: torch.Tensor, scale: torch.Tensor, flat: torch.Tensor, bits: int, method: str) -> torch.Tensor:
    """``values`` on the ADC's levels given each value's step ``scale`` (``adc_scale``, broadcast to it):
    linear levels rounded half up, or ``log`` levels of the magnitude with the sign kept."""
    if method not in QUANT_METHODS:
        raise ValueError(f"quant_method {method!r} is not one of {QUANT_METHODS}")
    if method == "linear":
        quantized = _linear(values, scale, bits)
    else:
        logs = torch.log(values.abs()).clamp_min(1e-20)
        quantized = torch.exp(_linear(logs, scale, bits - 1)).mul_(torch.sign(values))
    return torch.where(flat, values, quantized)


def _linear(values: torch.Tensor, sf: torch.Tensor, bits: int) -> torch.Tensor:
    delta = torch.exp2(sf)
    bound = 2.0 ** (bits - 1)
    return (values / delta).add_(0.5).floor_().clamp_(-bound, bound - 1).mul_(delta)


def naive_scale(x: torch.Tensor, max_voltage: float | None, dims: tuple[int, ...]) -> torch.Tensor:
    """memtorch's ``naive_scale`` over ``dims``: a group whose peak exceeds ``max_voltage`` is mapped onto ±max_voltage."""
    if max_voltage is None:
        return x
    peak = x.abs().amax(dim=dims, keepdim=True)
    scaled = ((x - -peak) * (max_voltage - -max_voltage)) / (peak - -peak) + -max_voltage
    return torch.where(peak <= max_voltage, x, scaled)


def conductance(layer: nn.Module) -> torch.Tensor:
    """The layer's effective conductances: G+ - G- of its crossbar pair, as memtorch's layers read them."""
    return layer.crossbar_operation(layer.crossbars, lambda crossbar: crossbar.conductance_matrix)


@dataclass(frozen=True)
class Tiles:
    """How a layer's weight matrix [K, out] sits on its crossbar tiles, read for one batched product.

    ``blocks[i]`` holds the conductances that input tile ``i`` (rows
    ``starts[i]`` to ``starts[i] + blocks[i].shape[0]`` of K) meets, every
    output tile side by side, ``columns`` per output tile. A lone output
    tile whose padded columns carry no current is cut to its real columns
    and the cut ones counted in ``padding``; otherwise every column is
    computed, since the ADC scale sees them.
    """

    blocks: list[torch.Tensor]
    starts: list[int]
    columns: int
    padding: int
    out_features: int


def tiles(layer: nn.Module, dtype: torch.dtype) -> Tiles:
    g = conductance(layer).to(dtype)
    tile_rows, tile_cols = layer.tile_shape
    tiles_map = layer.crossbars[0].tiles_map.long()
    n_in, n_out = tiles_map.shape
    out_features = layer.crossbars[0].columns
    k = layer.crossbars[0].rows
    starts = [i * tile_rows for i in range(n_in)]
    # an input tile's padded rows are zero volts, so only its real width is multiplied
    widths = [min(tile_rows, k - start) for start in starts]
    blocks = [g[tiles_map[i]][:, :w, :].permute(1, 0, 2).reshape(w, n_out * tile_cols) for i, w in enumerate(widths)]
    read = out_features if n_out == 1 else tile_cols
    if read < tile_cols and not any(block[:, read:].any() for block in blocks):
        # a lone output tile's padded columns carry no current unless a fault made G+ and G- differ there
        return Tiles([block[:, :read] for block in blocks], starts, read, tile_cols - read, out_features)
    return Tiles(blocks, starts, tile_cols, 0, out_features)


def tiled(layer: nn.Module, plan: Tiles, product: Callable[[int, torch.Tensor], torch.Tensor], dim: int) -> torch.Tensor:
    """Currents summed over input tiles, each tile's output vectors through the ADC on their own scale.

    ``product(i, block)`` gives input tile ``i``'s currents with every output
    tile's columns side by side along ``dim``; the tiles add up in memtorch's
    order. Padded columns count towards their vector's scale only: just the
    real output columns are quantised and come back.
    """
    total = None
    for i, block in enumerate(plan.blocks):
        part = product(i, block)
        real = part.narrow(dim, 0, plan.out_features)
        if layer.quant_method is None:
            levels = real.clone() if total is None else real
        else:
            vectors = part.unflatten(dim, (part.shape[dim] // plan.columns, plan.columns))
            scale, flat = adc_scale(vectors, layer.ADC_resolution, layer.ADC_overflow_rate, plan.padding, dim + 1)
            scale, flat = (t.expand_as(vectors).flatten(dim, dim + 1).narrow(dim, 0, plan.out_features)
                           for t in (scale, flat))
            levels = quantize(real, scale, flat, layer.ADC_resolution, layer.quant_method)
        total = levels if total is None else total.add_(levels)
    return total


def crossbar_rows(layer: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """Voltage rows [R, K] through the layer's crossbars -> currents [R, out], ADC applied per tile output.

    Without tiles the ADC is left to the caller, which knows the layer's
    grouping (the batch for ``Linear``).
    """
    if layer.tile_shape is None:
        return rows @ conductance(layer).to(rows.dtype)
    plan = tiles(layer, rows.dtype)

    def product(chunk: torch.Tensor) -> Callable[[int, torch.Tensor], torch.Tensor]:
        return lambda i, block: chunk[:, plan.starts[i]:plan.starts[i] + block.shape[0]] @ block

    return torch.cat([tiled(layer, plan, product(chunk), 1) for chunk in rows.split(CHUNK_ROWS)])


def conv_weight(layer: nn.Module, block: torch.Tensor, start: int) -> torch.Tensor:
    """A crossbar block [w, columns] as a convolution kernel [columns, C, kh, kw] over the whole input, zero
    outside the block's rows of K (memtorch unfolds K in (channel, row, column) order)."""
    weight = block.new_zeros(block.shape[1], layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1])
    weight[:, start:start + block.shape[0]] = block.T
    return weight.view(-1, layer.in_channels, *layer.kernel_size)


def conv2d_forward(self: nn.Module, input: torch.Tensor) -> torch.Tensor:
    """``memtorch.mn.Conv2d.forward`` for the whole batch at once (legacy float mode is memtorch's own).

    Each input tile's currents are one convolution with that tile's
    conductances as kernel: the unfolded rows' products, without unfolding.
    """
    if self.forward_legacy_enabled:
        return type(self).forward(self, input)
    n = input.shape[0]
    padding = self.padding
    x = F.pad(input, (padding[1], padding[1], padding[0], padding[0])) if any(padding) else input
    x = naive_scale(x, self.max_input_voltage, dims=(1, 2, 3))
    if self.tile_shape is None:
        kernel = conv_weight(self, conductance(self).to(x.dtype), 0)
        out = F.conv2d(x, kernel, stride=self.stride)
        out = adc(out.reshape(n, -1), self.ADC_resolution, self.ADC_overflow_rate, self.quant_method).view_as(out)
    else:
        plan = tiles(self, x.dtype)
        kernels = [conv_weight(self, block, start) for block, start in zip(plan.blocks, plan.starts)]
        height = (x.shape[2] - self.kernel_size[0]) // self.stride[0] + 1
        width = (x.shape[3] - self.kernel_size[1]) // self.stride[1] + 1
        # channels innermost, so that the ADC's reductions over a tile's columns read contiguous memory
        x = x.contiguous(memory_format=torch.channels_last)
        chunks = x.split(max(1, CHUNK_VALUES // (kernels[0].shape[0] * height * width)))
        out = torch.cat([tiled(self, plan, lambda i, _: F.conv2d(chunk, kernels[i], stride=self.stride), 1)
                         for chunk in chunks])
    out = self.transform_output(out)
    if self.bias is not None:
        out = out + self.bias.data.view(-1, 1, 1)
    return out


def linear_forward(self: nn.Module, input: torch.Tensor) -> torch.Tensor:
    """``memtorch.mn.Linear.forward`` with the batched crossbar product (legacy float mode is memtorch's own)."""
    if self.forward_legacy_enabled:
        return type(self).forward(self, input)
    x = naive_scale(input, self.max_input_voltage, dims=tuple(range(input.dim())))
    out = crossbar_rows(self, x)
    if self.tile_shape is None:
        out = adc(out.reshape(1, -1), self.ADC_resolution, self.ADC_overflow_rate, self.quant_method).view_as(out)
    out = self.transform_output(out)
    if self.bias is not None:
        out = out + self.bias.data.view(1, -1)
    return out


def accelerate(model: nn.Module) -> int:
    """Route every memtorch ``Conv2d``/``Linear`` of ``model`` through the batched path; returns how many.

    Only 1T1R layers scaled by ``naive_scale`` qualify (the passive-crossbar
    and non-linear paths are memtorch's alone); ``type(layer).forward`` stays
    memtorch's own per-sample path for comparison.
    """
    import memtorch
    from memtorch.map.Input import naive_scale as memtorch_naive_scale

    forwards = {memtorch.mn.Conv2d: conv2d_forward, memtorch.mn.Linear: linear_forward}
    count = 0
    for name, module in model.named_modules():
        forward = forwards.get(type(module))
        if forward is None:
            continue
        if not module.transistor or module.scaling_routine is not memtorch_naive_scale or hasattr(module, "non_linear"):
            raise ValueError(f"layer {name}: the batched path covers 1T1R crossbars with naive_scale inputs only")
        module.forward = MethodType(forward, module)
        count += 1
    return count
