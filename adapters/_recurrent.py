"""Recurrent layers (RNN, GRU, LSTM) unrolled over time steps: a DAG over time.

A recurrent layer with hidden size ``H`` over ``T`` steps becomes ``T`` layers of ``H`` units each (one per
direction): unit ``j`` of step ``t`` is hidden feature ``j`` after step ``t``, read on the layer's output
``y[:, t, j]``. Its incoming edges are

* from the input features at step ``t``, weighted by ``sum over gates |W_ih[gate, j, :]|``;
* from the units of the step before (``t - 1``, or ``t + 1`` in the reverse direction), weighted by
  ``sum over gates |W_hh[gate, j, :]|``;
* for gated layers (GRU, LSTM), an identity edge from unit ``j`` of the step before, of weight 1: the
  state carried through the update or forget gate (an LSTM's cell state rides with its hidden feature).

The gates are summed as a convolution's taps are: an edge exists when any gate couples the pair.

References
----------
.. [1] S. Hochreiter and J. Schmidhuber, "Long short-term memory", Neural Computation 9(8), 1997.
.. [2] K. Cho et al., "Learning phrase representations using RNN encoder-decoder", EMNLP 2014 (GRU).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from emergence.errors import UnsupportedOpError

if TYPE_CHECKING:
    from emergence.adapters._channels import ChannelGraphBuilder, ChannelValue

__all__: list[str] = []


def _coupling(w: torch.Tensor, gates: int, hidden: int, name: str) -> torch.Tensor:
    """``[H, in]``: the sum over gates of ``|w|`` for a stacked gate weight ``[gates * H, in]``."""
    w = w.detach().double().cpu()
    if w.dim() != 2 or w.shape[0] != gates * hidden:
        raise UnsupportedOpError(f"recurrent layer {name!r}: a weight of shape {tuple(w.shape)} where "
                                 f"{gates} gates of {hidden} features were expected")
    return w.abs().reshape(gates, hidden, -1).sum(0)


def batch_first(hidden: int) -> Callable[[int, int], tuple[Any, ...]]:
    """Where step ``t`` of direction ``d`` lies in a ``[batch, T, directions * H]`` output (PyTorch's)."""
    return lambda t, d: (slice(None), t, slice(d * hidden, (d + 1) * hidden))


def unroll(b: ChannelGraphBuilder, x: ChannelValue, weights: Sequence[tuple[torch.Tensor, torch.Tensor]], *,
           gates: int, carry: bool, name: str, kind: str, reverse: Sequence[bool] = (False, True),
           select: Callable[[int, int], tuple[Any, ...]] | None = None) -> tuple[ChannelValue, ChannelValue]:
    """Unroll one recurrent layer (one or two directions) over the time dim of ``x`` (``[batch, T, in]``).

    Parameters
    ----------
    b : ChannelGraphBuilder
        The builder that gets the step layers and their edges.
    x : ChannelValue
        The input, batch first.
    weights : sequence of (w_ih, w_hh)
        Per direction (forward, then reverse): ``[gates * H, in]`` and ``[gates * H, H]``.
    gates : int
        4 for LSTM, 3 for GRU, 1 for a plain RNN.
    carry : bool
        Whether the state is carried through a gate (GRU, LSTM): the identity edges of the step before.
    name, kind : str
        The module path and class of the layer.
    reverse : sequence of bool
        Per direction, whether it runs from the last step to the first.
    select : callable, optional
        ``(t, d) -> index`` of step ``t`` of direction ``d`` in the tensor the activity is read on, giving
        ``[batch, H]`` (default: :func:`batch_first`).

    Returns
    -------
    (ChannelValue, ChannelValue)
        The output ``[batch, T, directions * H]`` and the final state ``[directions, batch, H]`` (as the layer
        returns it, directions first).
    """
    from emergence.adapters._channels import ChannelValue, Slots

    if x.prov.dim() != 3:
        raise UnsupportedOpError(f"{kind} {name!r}: an input of shape {tuple(x.prov.shape)}; a recurrent layer "
                                 "here reads [batch, time, features]")
    steps = int(x.prov.shape[1])
    hidden = int(weights[0][1].shape[1])
    nodes = torch.empty(len(weights), steps, hidden, dtype=torch.long)
    where = select or batch_first(hidden)
    for d, (w_ih, w_hh) in enumerate(weights):
        w_in = _coupling(w_ih, gates, hidden, name)
        w_rec = _coupling(w_hh, gates, hidden, name)
        if carry:
            w_rec = w_rec + torch.eye(hidden, dtype=torch.float64)
        if w_in.shape[1] != x.prov.shape[-1]:
            raise UnsupportedOpError(f"{kind} {name!r}: input weights for {w_in.shape[1]} features, an input of "
                                     f"{int(x.prov.shape[-1])}")
        rec_j, rec_k = w_rec.nonzero(as_tuple=True)
        order = range(steps - 1, -1, -1) if reverse[d] else range(steps)
        prev = None
        suffix = "_reverse" if reverse[d] else ""
        for t in order:
            rec = b._new_layer(f"{name}{suffix}.t{t}", kind, hidden, -1)
            rec.select = where(t, d)
            k, node, coef = b._feature_terms(ChannelValue(x.prov[:, t], x.slots), -1)
            block = w_in[:, k] * coef.abs()  # [H, m] (w_in is already |w| summed over gates)
            j, m = block.nonzero(as_tuple=True)
            src, dst, w = [node[m]], [j], [block[j, m]]
            if prev is not None:
                src.append(rec_k + prev)
                dst.append(rec_j)
                w.append(w_rec[rec_j, rec_k])
            b._add_edges(rec, torch.cat(src), torch.cat(dst), torch.cat(w))
            nodes[d, t] = torch.arange(rec.offset, rec.offset + hidden)
            prev = rec.offset
    batch = int(x.prov.shape[0])
    flat = nodes.reshape(-1)
    slots = Slots.single(flat)
    ids = torch.arange(flat.numel()).reshape(len(weights), steps, hidden)
    out = ids.permute(1, 0, 2).reshape(steps, len(weights) * hidden)
    last = torch.stack([ids[d, 0 if reverse[d] else steps - 1] for d in range(len(weights))])  # [dirs, H]
    return (ChannelValue(out.expand(batch, *out.shape).clone(), slots),
            ChannelValue(last.unsqueeze(1).expand(len(weights), batch, hidden).clone(), slots))
