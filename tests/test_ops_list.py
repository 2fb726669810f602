"""The op registry: every op registered once, to a handler each walker has; the README's list is generated from it."""

from pathlib import Path

import pytest

from emergence.adapters import SUPPORTED_ONNX_OPS, SUPPORTED_TORCH_OPS, onnx_ops, torch_ops
from emergence.adapters._front import Front
from emergence.adapters.op_registry import IR_OWN, ONNX, TORCH, Group, dispatch
from emergence.adapters.ops import ops_markdown

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("groups, walker", [(TORCH, torch_ops._Walker), (ONNX, onnx_ops._Walker)])
def test_every_registered_handler_is_a_method_of_its_walker(groups, walker):
    for g in groups:
        if g.handler is not None:
            assert callable(getattr(walker, f"_{g.handler}", None)), (walker.__module__, g.handler)


@pytest.mark.parametrize("groups", [TORCH, ONNX])
def test_every_semantic_handler_lives_once_in_the_neutral_walker(groups):
    """One handler per semantic op: the IR readers only read arguments and call the neutral walker."""
    for g in groups:
        if g.handler is not None and g.handler not in IR_OWN:
            assert callable(getattr(Front, g.handler, None)), g.handler
    assert not hasattr(Front, "_shape") and "dense" not in IR_OWN


def test_ops_dispatch_to_their_semantic_handler():
    assert dispatch(TORCH)["conv_transpose2d"] == "conv" and dispatch(ONNX)["ConvTranspose"] == "conv"
    assert dispatch(TORCH)["add_"] == "add" and dispatch(ONNX)["IsNaN"] == "data_mask"
    assert "relu" in SUPPORTED_TORCH_OPS and "Relu" in SUPPORTED_ONNX_OPS and "LSTM" in SUPPORTED_ONNX_OPS
    assert "lstm" in SUPPORTED_TORCH_OPS and "fft_fft" not in SUPPORTED_TORCH_OPS


def test_an_op_registered_twice_is_a_registration_error():
    twice = (Group("dense", "a", frozenset({"linear"})), Group("conv", "b", frozenset({"linear"})))
    with pytest.raises(ValueError, match="'linear' is registered twice"):
        dispatch(twice)


def test_readme_holds_the_generated_list():
    text = README.read_text()
    start = text.index("-->\n", text.index("<!-- ops:start")) + 4
    end = text.index("\n<!-- ops:end -->")
    assert text[start:end] == ops_markdown(), "regenerate with: python -m emergence.adapters.ops"
