"""memtorch's crossbar inference, batched: the same physics on a whole batch at once.

memtorch's ``Conv2d.forward`` loops over the batch in Python and, with tiles
and an ADC, its C++ ``tiled_inference`` loops over every unfolded input row,
multiplying one input tile by one crossbar tile and quantising that tile's
output vector before summing: 37 ms per image for the default CNN here
(12 minutes for a 20 000-image environment). Here the rows of every sample
go through each tile as one matrix product and the ADC quantises all tile
outputs at once, each vector on its own scale, as ``memtorch_bindings.quantize``
does for one vector. Only the float32 rounding inside a tile's dot products
may differ (``tests/test_memristor_batched.py`` compares both paths).

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
from types import MethodType

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHUNK_ROWS = 1 << 17
"""Unfolded rows per tile product: bounds the ADC's full-width temporaries to about 64 MB."""

QUANT_METHODS = ("linear", "log")
"""memtorch's ADC modes; its layers silently skip the ADC for any other value, so these are checked."""


def adc(values: torch.Tensor, bits: int, overflow_rate: float, method: str | None,
        padding: torch.Tensor | int = 0) -> torch.Tensor:
    """memtorch's ADC on each row of ``values`` [G, n] independently, like ``memtorch_bindings.quantize``.

    Each row is one read of a tile's output vector. The scale is a power of
    two set by the row's largest magnitude (or the one at ``overflow_rate``
    from the top); ``bits`` levels around zero, rounding half up; ``log``
    quantises log-magnitudes and keeps the sign; an all-equal row passes
    unchanged. ``padding`` is the rest of the tile's width, which nobody
    reads but which the ADC scale sees: its currents [G, p], or just ``p``
    when they are known to be zero.
    """
    if method is None:
        return values
    if method not in QUANT_METHODS:
        raise ValueError(f"quant_method {method!r} is not one of {QUANT_METHODS}")
    low, high = values.amin(1), values.amax(1)
    if isinstance(padding, torch.Tensor):
        low, high = torch.minimum(low, padding.amin(1)), torch.maximum(high, padding.amax(1))
        magnitudes = torch.cat([values, padding], 1).abs() if overflow_rate else None
        n = magnitudes.shape[1] if overflow_rate else 0
    else:
        if padding:
            low, high = low.clamp(max=0), high.clamp(min=0)
        magnitudes = values.abs() if overflow_rate else None
        n = values.shape[1] + padding
    if overflow_rate == 0:
        top = torch.maximum(high, -low)
    else:
        index = min(math.floor(float(np.float32(overflow_rate) * np.float32(n)) + 0.5), n - 1)
        top = (magnitudes.topk(index + 1, dim=1).values[:, index] if index < magnitudes.shape[1]
               else magnitudes.new_zeros(len(values)))  # past the real columns only padded zeros are left
    sf = (1 - bits + torch.ceil(torch.log2(top + 1e-12))).unsqueeze(1)
    if method == "linear":
        quantized = _linear(values, sf, bits)
    else:
        logs = torch.log(values.abs()).clamp_min(1e-20)
        quantized = torch.exp(_linear(logs, sf, bits - 1)).mul_(torch.sign(values))
    return torch.where((high == low).unsqueeze(1), values, quantized)


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


def crossbar_rows(layer: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """Voltage rows [R, K] through the layer's crossbars -> currents [R, out], ADC applied per tile output.

    Without tiles the ADC is left to the caller, which knows the layer's
    grouping (a sample for ``Conv2d``, the batch for ``Linear``).
    """
    g = conductance(layer).to(rows.dtype)
    if layer.tile_shape is None:
        return rows @ g
    tile_rows, tile_cols = layer.tile_shape
    tiles_map = layer.crossbars[0].tiles_map.long()
    n_in, n_out = tiles_map.shape
    out_features = layer.crossbars[0].columns
    # input tile i meets crossbar tiles tiles_map[i, :], side by side; its padded entries are zero volts, so
    # only its real width is multiplied
    widths = [min(tile_rows, rows.shape[1] - i * tile_rows) for i in range(n_in)]
    blocks = [g[tiles_map[i]][:, :w, :].permute(1, 0, 2).reshape(w, n_out * tile_cols) for i, w in enumerate(widths)]
    read = out_features if n_out == 1 else tile_cols
    padding: list[torch.Tensor] | int = 0
    if read < tile_cols:
        # a lone output tile's padded columns carry no current unless a fault made G+ and G- differ there
        padded = [block[:, read:] for block in blocks]
        blocks = [block[:, :read] for block in blocks]
        padding = tile_cols - read if not any(p.any() for p in padded) else padded

    def currents(chunk: torch.Tensor, parts: list[torch.Tensor]) -> torch.Tensor:
        """[input tiles x rows x output tiles, columns per output tile] for this chunk of rows."""
        products = [chunk[:, i * tile_rows:i * tile_rows + w] @ part for i, (w, part) in enumerate(zip(widths, parts))]
        return torch.stack(products).view(-1, parts[0].shape[1] // n_out)

    outputs = []
    for chunk in rows.split(CHUNK_ROWS):
        # one ADC call for every (input tile, row, output tile) vector, each on its own scale
        levels = adc(currents(chunk, blocks), layer.ADC_resolution, layer.ADC_overflow_rate, layer.quant_method,
                     padding if isinstance(padding, int) else currents(chunk, padding))
        levels = levels.view(n_in, len(chunk), -1)
        total = levels[0].clone()
        for i in range(1, n_in):
            total.add_(levels[i])
        outputs.append(total[:, :out_features])
    return torch.cat(outputs)


def conv2d_forward(self: nn.Module, input: torch.Tensor) -> torch.Tensor:
    """``memtorch.mn.Conv2d.forward`` for the whole batch at once (legacy float mode is memtorch's own)."""
    if self.forward_legacy_enabled:
        return type(self).forward(self, input)
    n = input.shape[0]
    padding = self.padding
    x = F.pad(input, (padding[1], padding[1], padding[0], padding[0])) if any(padding) else input
    x = naive_scale(x, self.max_input_voltage, dims=(1, 2, 3))
    # Tensor.unfold, as memtorch does: F.unfold (im2col) takes seconds per batch on this CPU build
    patches = x.unfold(2, self.kernel_size[0], self.stride[0]).unfold(3, self.kernel_size[1], self.stride[1])
    height, width = patches.shape[2], patches.shape[3]
    rows = patches.permute(0, 2, 3, 1, 4, 5).reshape(n * height * width, -1)
    out = crossbar_rows(self, rows)
    if self.tile_shape is None:
        out = adc(out.reshape(n, -1), self.ADC_resolution, self.ADC_overflow_rate, self.quant_method)
    out = out.reshape(n, height * width, self.out_channels).transpose(1, 2).reshape(n, self.out_channels, height, width)
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
