"""The README's list of mapped operations is generated from the mapping tables (one source of truth)."""

from pathlib import Path

from emergence.adapters import SUPPORTED_ONNX_OPS, SUPPORTED_TORCH_OPS
from emergence.adapters.ops import ONNX_GROUPS, TORCH_GROUPS, ops_markdown

README = Path(__file__).resolve().parent.parent / "README.md"


def test_groups_cover_exactly_the_mapped_ops():
    assert set().union(*(ops for _, ops in TORCH_GROUPS)) == set(SUPPORTED_TORCH_OPS)
    assert set().union(*(ops for _, ops in ONNX_GROUPS)) == set(SUPPORTED_ONNX_OPS)


def test_readme_holds_the_generated_list():
    text = README.read_text()
    start = text.index("-->\n", text.index("<!-- ops:start")) + 4
    end = text.index("\n<!-- ops:end -->")
    assert text[start:end] == ops_markdown(), "regenerate with: python -m emergence.adapters.ops"
