"""The dependency rule of ``emergence/__init__.py``, checked by reading every module's imports.

core (``emergence/*.py``, ``emergence/testing``) -> adapters -> experiments
(``emergence/experiments``, ``emergence/landscape``) -> ``cli.py``; imports only point down.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT_PACKAGES = ("emergence.experiments", "emergence.landscape")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    if module == "cli":
        return "cli"
    if module.split(".")[0] == "adapters":
        return "adapters"
    if any(module == p or module.startswith(p + ".") for p in EXPERIMENT_PACKAGES):
        return "experiments"
    if module.split(".")[0] == "emergence":
        return "core"
    return "external"


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import in a file, lazy ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno, id(node) in top))
            # ``from emergence import experiments`` names a subpackage
            out += [(f"{node.module}.{a.name}", node.lineno, id(node) in top) for a in node.names
                    if (ROOT / node.module.replace(".", "/") / a.name).is_dir()]
    return out


SOURCES = sorted([*ROOT.glob("emergence/**/*.py"), *ROOT.glob("adapters/**/*.py"), ROOT / "cli.py"])
ALLOWED = {
    "core": {"core", "external"},
    "adapters": {"core", "adapters", "external"},
    "experiments": {"core", "adapters", "experiments", "external"},
    "cli": {"core", "adapters", "experiments", "external"},
}
#: The facade's only upward names, served lazily (PEP 562) so ``import emergence`` stays light.
FACADE_LAZY = {"adapters.model_measure"}


def test_the_layers_exist():
    layers = {_layer(_module_name(p)) for p in SOURCES}
    assert layers == {"core", "adapters", "experiments", "cli"}
    assert len([p for p in SOURCES if _layer(_module_name(p)) == "core"]) >= 8


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path):
    module = _module_name(path)
    layer = _layer(module)
    bad = []
    for target, line, at_top in _imports(path):
        if target == "cli" or target.startswith("cli."):
            bad.append(f"line {line}: imports cli (no module may)")
            continue
        target_layer = _layer(target)
        if target_layer in ALLOWED[layer]:
            continue
        if module == "emergence" and not at_top and target in FACADE_LAZY:
            continue  # the facade's lazy re-export of measure_model
        bad.append(f"line {line}: {layer} module imports {target} ({target_layer})")
    assert not bad, f"{path.relative_to(ROOT)} breaks the dependency rule: " + "; ".join(bad)


def test_the_rule_test_catches_a_violation(tmp_path: Path):
    fake = tmp_path / "x.py"
    fake.write_text("import os\nfrom adapters.graphfile import read_graph\ndef f():\n    import emergence.experiments.sweep\n")
    found = [t for t, _, _ in _imports(fake)]
    assert [_layer(t) for t in found] == ["external", "adapters", "experiments"]


def test_import_emergence_is_light():
    code = ("import sys, emergence\n"
            "heavy = [m for m in ('matplotlib', 'xarray', 'onnx', 'onnxruntime', 'adapters') "
            "if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", f"import emergence imported {out.stdout.strip()}"


def test_public_api_is_stable():
    import emergence

    for name in ("measure", "measure_model", "layered", "graph", "from_edges", "from_adjacency", "from_layers",
                 "measure_masks", "EmergenceError", "GraphError", "ModelMeasurement", "validate", "node_count"):
        assert hasattr(emergence, name), name
    assert "measure_model" in dir(emergence)
    with pytest.raises(AttributeError):
        emergence.no_such_name  # noqa: B018
