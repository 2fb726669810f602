"""The operations each model front-end maps, grouped by what they do: one source for the README's list.

``python -m emergence.adapters.ops`` prints the Markdown of the README's "Ops covered" section; a test checks
that the README holds exactly that text, so the list never drifts from the mapping tables.
"""

from __future__ import annotations

from emergence.adapters import onnx_ops as _onnx
from emergence.adapters import torch_ops as _torch

__all__ = ["TORCH_GROUPS", "ONNX_GROUPS", "ops_markdown"]

#: (what the ops do, ATen names) in the order the README lists them.
TORCH_GROUPS: list[tuple[str, set[str]]] = [
    ("dense layers (constant weight), or a product of two activations (attention)", _torch._DENSE),
    ("convolutions, and transposed ones (those at channel level only)", _torch._CONV),
    ("batch norm (eval; folded into the layer before it)", _torch._BATCH_NORM),
    ("elementwise (activations, norms, dropout, casts): the activity is read at the end of the chain",
     _torch._ELEMENTWISE),
    ("softmax over any axis (the union rule along it)", _torch._SOFTMAX),
    ("attention (the union rule: scores, softmax, values)", _torch._ATTENTION),
    ("reductions over any axes (the union rule)", _torch._REDUCE),
    ("pooling", _torch._POOL),
    ("shape and layout", _torch._SHAPE),
    ("padding", _torch._PAD),
    ("residual add / subtract (a constant is a bias)", _torch._ADD),
    ("multiply / divide (by constants: scales; of two activations: a gate)", _torch._MUL),
    ("masking (selects, adds no dependency)", _torch._MASK),
    ("resizing (interpolate, upsample; channel level only)", _torch._RESIZE),
    ("checks that compute nothing (ignored)", _torch._NO_OPS),
    ("other", {"cat", "concat", "getitem", "einsum", "embedding"}),
]

#: (what the ops do, ONNX op types).
ONNX_GROUPS: list[tuple[str, set[str]]] = [
    ("dense layers (constant weight), or MatMul of two activations (attention)", _onnx._DENSE),
    ("convolutions, and transposed ones (those at channel level only)", _onnx._CONV),
    ("elementwise: the activity is read at the end of the chain", _onnx._ELEMENTWISE),
    ("softmax over any axis (the union rule along it)", _onnx._SOFTMAX),
    ("reductions over any axes (the union rule)", _onnx._REDUCE),
    ("pooling", _onnx._POOL),
    ("shape and layout (Gather of token ids from a constant table: an embedding)", _onnx._SHAPE),
    ("merges (Add/Sub: residuals or biases; Mul/Div: scales or gates; a scalar divided by data: elementwise)",
     _onnx._MERGE),
    ("tests of data (NaN checks, comparisons, logic): masks that select and add no dependency", _onnx._DATA_MASK),
    ("resizing (channel level only)", _onnx._RESIZE),
    ("other", {"BatchNormalization", "Concat", "Pad", "Shape", "Constant", "Einsum", "Where"}),
]


def ops_markdown() -> str:
    """The README's list of mapped operations, generated from the front-ends' tables.

    Examples
    --------
    >>> "`scaled_dot_product_attention`" in ops_markdown()
    True
    """
    lines = ["PyTorch (ATen names of the `torch.export` IR):", ""]
    lines += [f"- {what}: {', '.join(f'`{o}`' for o in sorted(ops))}" for what, ops in TORCH_GROUPS]
    lines += ["", "ONNX (opset 7 and later; models below opset 13 are upgraded to 17 first; any op whose inputs "
              "are all constants is folded):", ""]
    lines += [f"- {what}: {', '.join(f'`{o}`' for o in sorted(ops))}" for what, ops in ONNX_GROUPS]
    lines += ["", "Anything else — recurrent layers (LSTM, GRU), `TopK`, an einsum with a "
              "weight operand — is refused with one sentence naming the op and the node."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(ops_markdown())
