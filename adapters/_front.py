"""The IR-neutral walker: one handler per semantic op, shared by the PyTorch and the ONNX front-ends.

A front-end reads its IR (``torch.export`` fx nodes in :mod:`emergence.adapters.torch_ops`, ONNX nodes and
constant folding in :mod:`emergence.adapters.onnx_ops`) and calls the handlers of :class:`Front` with values
named by strings: ``dense``, ``conv``, ``batch_norm``, ``elementwise``, ``reduce``, ``softmax``, ``attention``,
``add``, ``mul``, ``select``, ``concat``, ``embedding``, ``resize``, ``pool``, ``einsum``, ``recurrence``. The
walker owns the builder (channel or neuron level) and the bookkeeping every IR needs:

* **activation chains** (``tail``, ``act``): an elementwise function of one layer's output extends that layer's
  chain, and the layer's activity is read at the chain's end, so a decomposed activation (``x * sigmoid(x)``,
  the erf form of GELU) is read after the whole formula;
* **normalisation statistics** (``root``, ``stat``): combining a value with a statistic of its own root
  (``x - mean(x)``, ``x * rsqrt(var(x) + eps)``) is elementwise, as if the statistic were a constant;
* **data** (``data``): values computed from integer inputs (token ids, masks) select and mask but are not units;
* **the residual rule**: a sum that a nonlinearity reads is the branch layer's units
  (:meth:`~emergence.adapters._channels.ChannelGraphBuilder.residual`).

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from emergence.adapters._channels import ChannelGraphBuilder, ChannelValue, Slots
from emergence.adapters._neurons import NeuronGraphBuilder
from emergence.adapters._window import Window
from emergence.errors import UnsupportedOpError

__all__: list[str] = []


def _is_value(v: Any) -> bool:
    return isinstance(v, ChannelValue)


def _float64(v: Any) -> torch.Tensor:
    """A constant operand (a tensor, an array, a number) as a float64 CPU tensor."""
    if isinstance(v, torch.Tensor):
        return v.detach().to("cpu", torch.float64)
    return torch.from_numpy(np.array(v, dtype=np.float64))


class Front:
    """State and semantic handlers of a walk; a front-end subclass reads its IR and names its values.

    Parameters
    ----------
    granularity : {"channel", "neuron"}
        Which builder the walk feeds.
    activations : frozenset of str
        The IR's names of nonlinearities (the residual rule reads a sum whose every use is one).
    """

    def __init__(self, granularity: str, activations: frozenset[str]) -> None:
        self.b = NeuronGraphBuilder() if granularity == "neuron" else ChannelGraphBuilder()
        self.activations = activations
        self.tail: dict[str, int] = {}  # value -> layer whose activation chain ends there
        self.act: dict[int, str] = {}  # layer -> value holding its activation
        self.data: set[str] = set()  # values computed from integer inputs (token ids, masks)
        self.root: dict[str, str] = {}  # value -> the value it is an elementwise function of
        self.stat: dict[str, str] = {}  # a mean or variance (kept dims) -> the root it summarises
        self.steps: dict[int, list[int]] = {}  # a recurrent layer's step -> all its steps (read on one tensor)

    # -- what the IR answers ---------------------------------------------------------------
    def uses(self, name: str) -> int:
        """How many ops (and graph outputs) read the value ``name``."""
        raise NotImplementedError

    def user_ops(self, name: str) -> list[str]:
        """The op names of every reader of ``name`` (``"output"`` for a graph output)."""
        raise NotImplementedError

    # -- bookkeeping -------------------------------------------------------------------------
    def _root(self, name: str) -> str:
        return self.root.get(name, name)

    def continue_chain(self, out: str, *srcs: str) -> None:
        """``out`` is an elementwise function of ``srcs`` (and constants): when they all lie on one layer's
        chain, so does ``out``, and the layer's activity is read at the latest value of its chain."""
        layers = {self.tail.get(s) for s in srcs}
        layer = next(iter(layers)) if len(layers) == 1 else None
        if layer is not None and self.b.layers[layer].kind != "input":
            self.tail[out] = layer
            for step in self.steps.get(layer, [layer]):
                self.act[step] = out

    def unary(self, out: str, src: str) -> None:
        """``out`` is an elementwise function of ``src`` alone (and constants)."""
        self.root[out] = self._root(src)
        if src in self.stat:
            self.stat[out] = self.stat[src]
        self.continue_chain(out, src)

    def _normalising(self, out: str, a: str, b: str) -> str | None:
        """The data operand when the other one is a statistic of its root (x - mean(x), x * rsqrt(var(x)));
        None otherwise (two statistics of one root make a statistic)."""
        sa, sb = self.stat.get(a), self.stat.get(b)
        if sa is not None and sa == sb:
            self.stat[out] = sa
            return None
        if sb is not None and sb == self._root(a) and sa is None:
            return a
        if sa is not None and sa == self._root(b) and sb is None:
            return b
        return None

    def layer(self, out: str, value: ChannelValue) -> ChannelValue:
        """``value`` (named ``out``) is the raw output of the layer just built: its chain starts here."""
        layer = len(self.b.layers) - 1
        self.tail[out] = layer
        for step in self.steps.get(layer, [layer]):
            self.act[step] = out
        return value

    def activation_follows(self, out: str) -> bool:
        """Whether every use of ``out`` is a nonlinearity (the residual rule)."""
        ops = self.user_ops(out)
        return bool(ops) and all(o in self.activations for o in ops)

    @staticmethod
    def expanded(x: ChannelValue, shape: Sequence[int]) -> ChannelValue:
        """``x`` broadcast to ``shape`` (batch kept), as a new value."""
        return x.derive(x.prov.expand((x.prov.shape[0], *shape[1:])).clone())

    # -- inputs --------------------------------------------------------------------------------
    def input(self, out: str, shape: Sequence[int], *, per_element: bool | str, index: int) -> ChannelValue:
        """The ``index``-th floating input: its units are nodes; its chain starts here."""
        value = self.b.input(shape, per_element=per_element, name="input" if index == 0 else f"input:{out}")
        self.tail[out] = len(self.b.layers) - 1
        self.act[len(self.b.layers) - 1] = out
        return value

    # -- node-creating ops ------------------------------------------------------------------------
    def dense(self, out: str, x: ChannelValue, w: torch.Tensor, *, name: str, kind: str = "Linear") -> ChannelValue:
        """A dense layer ``x W^T`` with a constant 2-D ``w`` of shape ``[out, in]``."""
        return self.layer(out, self.b.linear(x, w, name=name, kind=kind))

    def conv(self, out: str, x: ChannelValue, w: torch.Tensor, *, groups: int, shape: Sequence[int], name: str,
             kind: str, window: Window | None = None, transposed: bool = False) -> ChannelValue:
        """A convolution (``transposed``: its adjoint) with a constant weight, output of shape ``shape``."""
        if transposed:
            value = self.b.conv_transpose(x, w, groups=groups, out_shape=shape, name=name, kind=kind, window=window)
        else:
            value = self.b.conv(x, w, groups=groups, out_shape=shape, name=name, kind=kind, window=window)
        return self.layer(out, value)

    def embedding(self, out: str, *, name: str, features: int, shape: Sequence[int]) -> ChannelValue:
        """A lookup of token ids in a constant table: the table's features are the nodes."""
        return self.layer(out, self.b.table(name, features, shape))

    def recurrence(self, out: str, x: ChannelValue, weights: Sequence[tuple[torch.Tensor, torch.Tensor]], *,
                   gates: int, carry: bool, name: str, kind: str, reverse: Sequence[bool] = (False, True),
                   select: Any = None) -> tuple[ChannelValue, ChannelValue]:
        """An RNN / GRU / LSTM layer unrolled over time steps (a DAG over time; a unit per hidden feature
        and step, see :mod:`emergence.adapters._recurrent`). ``weights`` holds ``(w_ih, w_hh)`` per
        direction (``reverse``: whether it runs backwards; ``select(t, d)``: where a step's units lie in the
        tensor its activity is read on). Returns the output ``[batch, T, directions * H]`` (named ``out``;
        every step layer's activity is read on it) and the final state ``[directions, batch, H]``."""
        first = len(self.b.layers)
        y, last = self.b.recurrence(x, weights, gates=gates, carry=carry, name=name, kind=kind, reverse=reverse,
                                    select=select)
        steps = list(range(first, len(self.b.layers)))
        for layer in steps:
            self.steps[layer] = steps
        self.layer(out, y)
        return y, last

    # -- elementwise ops --------------------------------------------------------------------------------
    def elementwise(self, out: str, src: str, x: ChannelValue, *, keep: bool = False) -> ChannelValue:
        """An elementwise function (activation, norm, cast); ``keep``: an identity that keeps the layer's
        raw output (so batch norm after it still folds)."""
        self.unary(out, src)
        return x if keep else x.derive(x.prov)

    def batch_norm(self, out: str, src: str, x: ChannelValue, scale: torch.Tensor) -> ChannelValue:
        """Batch norm in eval mode, a per-channel ``scale`` (``weight / sqrt(var + eps)``)."""
        factor = _float64(scale).reshape([1, -1] + [1] * (x.prov.dim() - 2))
        value = self.b.scale(x, factor, exclusive=self.uses(src) == 1)
        self.unary(out, src)
        return value

    def softmax(self, out: str, src: str, x: ChannelValue, dim: int) -> ChannelValue:
        """Softmax along ``dim``: the union rule along it."""
        self.unary(out, src)
        return self.b.spread(x, dim % x.prov.dim())

    def resize(self, x: ChannelValue, shape: Sequence[int], *, mode: str = "nearest",
               scales: Sequence[float | None] | None = None, transform: str = "asymmetric",
               nearest: str = "floor") -> ChannelValue:
        """Up- or down-sampling to ``shape`` (batch from ``x``) by ``mode`` ("nearest", "linear"; others have
        no neuron graph), with per-dim ``scales`` when the op was given them and the coordinate ``transform``
        (see :func:`emergence.adapters._resize.taps`). Not elementwise: the layer before it is read before it.
        """
        from emergence.adapters._resize import taps

        spatial = list(zip(x.prov.shape[2:], shape[2:], strict=True))
        scales = list(scales) if scales else [None] * len(spatial)
        dims = None
        if mode in ("nearest", "linear") and len(scales) == len(spatial):
            dims = [taps(mode, int(i), int(o), scale=s, transform=transform, nearest=nearest)
                    for (i, o), s in zip(spatial, scales, strict=True)]
        return self.b.resize(x, (x.prov.shape[0], *shape[1:]), dims)

    def reduce(self, out: str, src: str, x: ChannelValue, dims: Sequence[int] | None, *, keepdim: bool,
               statistic: bool = False) -> ChannelValue:
        """A reduction over ``dims`` (None or empty: every dim but the batch); ``statistic``: a mean or
        variance, which, kept at its dims, may normalise its own input."""
        dims = list(dims) if dims else list(range(1, x.prov.dim()))
        if statistic and keepdim:
            self.stat[out] = self._root(src)
        return self.b.reduce(x, [int(d) % x.prov.dim() for d in dims], keepdim=keepdim)

    def pool(self, x: ChannelValue, shape: Sequence[int], window: Window) -> ChannelValue:
        """A pooling window (``Window(adaptive=True)``: adaptive or global)."""
        return self.b.pool(x, (x.prov.shape[0], *shape[1:]), window)

    # -- ops of several values --------------------------------------------------------------------------
    def add(self, out: str, names: Sequence[str], values: Sequence[Any], shape: Sequence[int],
            signs: Sequence[float] | None = None) -> ChannelValue:
        """A sum (``signs``: -1 subtracts) of values and constants: a constant is a bias; two statistics or a
        value and its own statistic normalise; a sum of a value with a function of itself stays elementwise;
        a sum that a nonlinearity reads is the branch layer's units (the residual rule); else the union rule.
        """
        data = [i for i, v in enumerate(values) if _is_value(v)]
        if not data:
            raise UnsupportedOpError(f"a sum of constants reached the walker ({out!r})")
        if len(data) == 1:
            return self._one_value(out, names, values, data[0], shape)
        if len(values) == 2:
            src = self._normalising(out, names[0], names[1])
            if src is not None:  # x - mean(x): normalisation, elementwise on x
                self.unary(out, src)
                return self.expanded(values[names.index(src)], shape)
        vals = [values[i] for i in data]
        self.continue_chain(out, *(names[i] for i in data))
        roots = {self._root(names[i]) for i in data}
        if len(roots) == 1 and len(data) == len(values):  # x + 0.04 x^3 (tanh GELU): elementwise on x
            self.root[out] = next(iter(roots))
            return self.b.merge(vals, combine="max")
        signs = [float(signs[i]) for i in data] if signs is not None and len(data) == len(values) else None
        if self.activation_follows(out):  # relu(branch + shortcut): the sum's units are the branch's
            res = self.b.residual(vals, signs or [1.0] * len(vals))
            if res is not None:
                self.tail[out] = res[1]
                self.act[res[1]] = out
                return res[0]
        return self.b.merge(vals, signs=signs)

    def mul(self, out: str, names: Sequence[str], values: Sequence[Any], shape: Sequence[int], *,
            divide: bool = False) -> ChannelValue:
        """A product (``divide``: the first operand divided by the second): of two values a gate (the
        union rule), or normalisation by a statistic of the value's own root; of a value and a data mask a
        selection; by a scalar part of an elementwise formula; by a per-channel constant a scale, which
        folds into the layer before it; a scalar divided by a value is elementwise on it."""
        data = [i for i, v in enumerate(values) if _is_value(v)]
        if len(data) == 2:
            src = self._normalising(out, names[0], names[1])
            if src is not None:  # x * rsqrt(var(x) + eps): normalisation, elementwise on x
                self.unary(out, src)
                return self.expanded(values[names.index(src)], shape)
            self.continue_chain(out, names[0], names[1])
            if self._root(names[0]) == self._root(names[1]):  # x * sigmoid(x): still elementwise on x
                self.root[out] = self._root(names[0])
            return self.b.merge(list(values), combine="max")
        if len(data) != 1 or len(values) != 2:
            raise UnsupportedOpError(f"a product of {len(values)} operands, {len(data)} of them computed ({out!r})")
        i = data[0]
        x, other = values[i], values[1 - i]
        if names[1 - i] in self.data:  # a data-dependent mask: selects, adds nothing
            self.unary(out, names[i])
            return self.expanded(x, shape)
        factor = _float64(other)
        self.unary(out, names[i])
        if divide and i == 1:  # c / x: a scalar c makes it elementwise on x (RMSNorm's 1 / sqrt(...))
            if factor.numel() != 1:
                raise UnsupportedOpError(f"dividing a per-channel constant by a tensor ({out!r}) is not supported")
            return x.derive(x.prov)
        if factor.numel() == 1:  # a scalar is part of an elementwise formula (GELU's 0.5, hard-swish's 1/6)
            return x.derive(x.prov)
        return self.b.scale(x, 1.0 / factor if divide else factor, exclusive=self.uses(names[i]) == 1)

    def select(self, out: str, names: Sequence[str], values: Sequence[Any], shape: Sequence[int]) -> ChannelValue:
        """``where`` / ``masked_fill``: masking selects entries but adds no dependency, so data flows as if
        unmasked (a causal or padding mask removes positions, never a feature of a head)."""
        data = [i for i, v in enumerate(values) if _is_value(v)]
        if not data:
            raise UnsupportedOpError(f"a selection between constants by data ({out!r})")
        if len(data) == 1:
            self.unary(out, names[data[0]])
            return self.expanded(values[data[0]], shape)
        return self.expanded(self.b.merge([values[i] for i in data]), shape)

    def _one_value(self, out: str, names: Sequence[str], values: Sequence[Any], i: int,
                   shape: Sequence[int]) -> ChannelValue:
        """A value combined with constants by a sum: a bias, or a data mask (either adds no dependency)."""
        x = values[i]
        self.unary(out, names[i])
        masked = any(n in self.data for j, n in enumerate(names) if j != i)
        if masked or tuple(x.prov.shape[1:]) != tuple(shape[1:]):
            return self.expanded(x, shape)
        return x

    def concat(self, values: Sequence[Any], dim: int) -> ChannelValue:
        """Concatenation along ``dim``; a constant block has no provenance."""
        ref = next((v for v in values if _is_value(v)), None)
        if ref is None:
            raise UnsupportedOpError("a concatenation of constants reached the walker")
        if len(values) == 1:
            return ref
        parts = []
        for v in values:
            if _is_value(v):
                parts.append(v)
            else:
                block = [ref.prov.shape[0], *np.shape(v)[1:]]
                parts.append(ChannelValue(torch.full(block, -1, dtype=torch.long),
                                          Slots.single(torch.empty(0, dtype=torch.long))))
        return self.b.concat(parts, dim % ref.prov.dim())

    def product(self, a: ChannelValue, b: ChannelValue) -> ChannelValue:
        """A matrix product of two activations (attention scores, attention times values)."""
        return self.b.product(a, b)

    def attention(self, q: ChannelValue, k: ChannelValue, v: ChannelValue, mask: Any = None) -> ChannelValue:
        """Scaled dot-product attention: scores ``q k^T`` (plus a computed mask), softmax, times values."""
        scores = self.b.product(q, k.derive(k.prov.transpose(-1, -2)))
        if _is_value(mask):
            scores = self.b.merge([scores, mask])
        return self.b.product(self.b.spread(scores, scores.prov.dim() - 1), v)

    def einsum(self, equation: str, operands: Sequence[Any], where: str) -> ChannelValue:
        """An einsum of activations (the union rule over contracted axes); constants pass as None."""
        try:
            return self.b.einsum(equation, [v if _is_value(v) else None for v in operands])
        except UnsupportedOpError as exc:
            raise UnsupportedOpError(f"{exc} ({where})") from exc
