"""The README's list of the operations each model front-end maps, from the op registry (:mod:`.op_registry`).

``python -m emergence.adapters.ops`` prints the Markdown of the README's "Ops covered" section; a test checks
that the README holds exactly that text, so the list never drifts from the mapping tables.
"""

from __future__ import annotations

from emergence.adapters.op_registry import ONNX, TORCH

__all__ = ["TORCH_GROUPS", "ONNX_GROUPS", "ops_markdown"]

#: (what the ops do, ATen names) in the order the README lists them (from the op registry).
TORCH_GROUPS: list[tuple[str, set[str]]] = [(g.readme, set(g.ops)) for g in TORCH]

#: (what the ops do, ONNX op types) (from the op registry).
ONNX_GROUPS: list[tuple[str, set[str]]] = [(g.readme, set(g.ops)) for g in ONNX]


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
    lines += ["", "Anything else — `TopK`, an einsum with a "
              "weight operand — is refused with one sentence naming the op and the node."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(ops_markdown())
