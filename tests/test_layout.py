"""The dependency rule of ``emergence/__init__.py``, checked by reading every module's imports.

core (``emergence/*.py``, ``emergence/testing``) -> adapters (the folder ``adapters/``, installed as
``emergence.adapters``) -> experiments (``emergence/experiments``, ``emergence/landscape``) -> ``cli.py``
(installed as ``emergence.cli``); imports only point down. Installed, the project is one package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT_PACKAGES = ("emergence.experiments", "emergence.landscape", "emergence.integrations")


def _module_name(path: Path) -> str:
    """The installed name of a source file: ``adapters/x.py`` is ``emergence.adapters.x``, ``cli.py`` is
    ``emergence.cli``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts and parts[0] in ("adapters", "cli"):
        parts.insert(0, "emergence")
    return ".".join(parts)


def _layer(module: str) -> str:
    if module == "emergence.cli":
        return "cli"
    if module == "emergence.adapters" or module.startswith("emergence.adapters."):
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
                    if (ROOT / node.module.replace(".", "/") / a.name).is_dir()
                    or (node.module == "emergence" and a.name in ("adapters", "cli"))]
    return out


SOURCES = sorted([*ROOT.glob("emergence/**/*.py"), *ROOT.glob("adapters/**/*.py"), ROOT / "cli.py"])
ALLOWED = {
    "core": {"core", "external"},
    "adapters": {"core", "adapters", "external"},
    "experiments": {"core", "adapters", "experiments", "external"},
    "cli": {"core", "adapters", "experiments", "external"},
}
#: The facade's only upward names, served lazily (PEP 562) so ``import emergence`` stays light.
FACADE_LAZY = {"emergence.adapters.model_measure", "emergence.experiments.monitor"}


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
        if target.split(".")[0] in ("adapters", "cli"):
            bad.append(f"line {line}: imports {target}; installed, only emergence.{target} exists")
            continue
        if target == "emergence.cli":
            bad.append(f"line {line}: imports the CLI (no module may)")
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
    fake.write_text("import os\nfrom emergence.adapters.graphfile import read_graph\n"
                    "def f():\n    import emergence.experiments.sweep\n")
    found = [t for t, _, _ in _imports(fake)]
    assert [_layer(t) for t in found] == ["external", "adapters", "experiments"]


def test_import_emergence_is_light():
    code = ("import sys, emergence\n"
            "heavy = [m for m in ('matplotlib', 'xarray', 'onnx', 'onnxruntime', 'emergence.adapters', "
            "'torch_geometric', 'torch._dynamo') "
            "if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", f"import emergence imported {out.stdout.strip()}"


def test_reading_a_graph_file_imports_no_model_code():
    """The ``graph`` command's imports: no model walkers, ONNX, torch_geometric, xarray or matplotlib."""
    code = ("import sys\n"
            "from emergence.cli import app\n"
            f"sys.argv = ['emergence', 'graph', {str(ROOT / 'data' / 'example.graphml')!r}, '--json']\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('matplotlib', 'xarray', 'onnx', 'onnxruntime', 'torch_geometric', 'torch._dynamo', "
            "'emergence.adapters.model_files', 'emergence.experiments.results') if m in sys.modules]\n"
            "print(','.join(heavy), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert '"emergence"' in out.stdout, out.stderr
    assert out.stderr.strip() == "", f"emergence graph imported {out.stderr.strip()}"


def test_matplotlib_still_imports_after_the_graph_command():
    code = ("import sys\nfrom emergence import cli\ncli._igraph_without_drawing()\n"
            "import igraph, matplotlib.pyplot\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "ok", out.stderr


def test_public_api_is_stable():
    import emergence

    for name in ("measure", "measure_model", "layered", "graph", "from_edges", "from_adjacency", "from_layers",
                 "measure_masks", "Graph", "EmergenceError", "GraphError", "ModelMeasurement", "validate",
                 "node_count"):
        assert hasattr(emergence, name), name
    assert "measure_model" in dir(emergence)
    with pytest.raises(AttributeError):
        emergence.no_such_name  # noqa: B018


def test_the_wheel_installs_one_package(tmp_path: Path):
    """``pip wheel .`` holds ``emergence/`` only: ``adapters/`` and ``cli.py`` inside it, nothing top-level."""
    import zipfile

    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path), str(ROOT)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("emergence-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"emergence", f"{wheel.name.split('-')[0]}-"
                                                f"{wheel.name.split('-')[1]}.dist-info"}
    assert "emergence/cli.py" in names and "emergence/adapters/model_files.py" in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "emergence = emergence.cli:app" in entry


def test_no_top_level_adapters_or_cli_outside_the_checkout(tmp_path: Path):
    code = "import importlib.util as u; print(u.find_spec('adapters'), u.find_spec('cli'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "None None"
