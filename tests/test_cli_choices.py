"""CLI choices are Enums (so --help lists them) that match the library's tables."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from emergence import cli
from emergence.activity import AGGREGATIONS, OUTPUTS
from emergence.adapters._probe import GRANULARITIES
from emergence.adapters.architectures import ARCHITECTURES
from emergence.adapters.graphfile import FORMATS
from emergence.adapters.init import INITS
from emergence.cycles import CONDENSE_RULES
from emergence.experiments.prune import PRUNE_SCOPES, PRUNE_STRUCTURES, PRUNE_WHEN
from emergence.experiments.train import OPTIMIZERS
from emergence.measure import METHODS


@pytest.mark.parametrize("enum, table", [
    (cli.Method, METHODS), (cli.Aggregation, AGGREGATIONS), (cli.Arch, ARCHITECTURES), (cli.Optimizer, OPTIMIZERS),
    (cli.PruneAt, PRUNE_WHEN), (cli.PruneScope, PRUNE_SCOPES), (cli.PruneStructure, PRUNE_STRUCTURES),
    (cli.Granularity, GRANULARITIES), (cli.Outputs, OUTPUTS), (cli.Init, INITS), (cli.Condense, CONDENSE_RULES),
])
def test_enum_matches_library(enum, table):
    assert [e.value for e in enum] == list(table)


def test_graph_formats_are_readable_formats():
    readable = {f for f in FORMATS.values()}
    assert {e.value for e in cli.GraphFormat} == readable


@pytest.mark.parametrize("command, shown", [
    ("sweep", ["channel|neuron", "mlp|cnn|vgg", "init|after|iterative", "sgd|adam", "layerwise|global",
               "mean|absmean|frac", "exclude|logits|softmax", "default|emergence"]),
    ("measure", ["mean|absmean|frac", "channel|neuron", "exclude|logits|softmax"]),
    ("graph", ["auto|exact|log", "graphml|gml"]),
])
def test_help_lists_choices(command, shown):
    out = CliRunner().invoke(cli.app, [command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert out.exit_code == 0
    for s in shown:
        assert s in out.output, s


@pytest.mark.parametrize("args, phrase", [
    (["sweep", "--out", "x.nc", "--arch", "resnet"], "'resnet' is not one of 'mlp', 'cnn', 'vgg'"),
    (["graph"], "Missing argument"),
    (["no-such-command"], "No such command"),
])
def test_usage_errors_are_one_line_and_exit_1(args, phrase):
    out = CliRunner().invoke(cli.app, args)
    assert out.exit_code == 1, out.output
    assert phrase in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_version_and_flags_render_as_flags():
    out = CliRunner().invoke(cli.app, ["--version"])
    assert out.exit_code == 0 and out.output.startswith("emergence ")
    text = CliRunner().invoke(cli.app, ["measure", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    flags = [line for line in text.splitlines() if "--json" in line or "--weighted" in line or "--trust-pickle" in line]
    assert flags and not any("<bool>" in line or "--no-" in line for line in flags), flags
    assert "MODEL" in text


@pytest.mark.parametrize("command", [[], ["graph"], ["measure"], ["sweep"], ["plot"], ["report"], ["landscape"],
                                     ["reproduce"]])
def test_help_shows_no_bool_type_and_no_braces(command):
    text = CliRunner().invoke(cli.app, [*command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    assert "<bool>" not in text, text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    for arg in ("PATH", "MODEL", "RUN"):
        assert f"{arg} <" not in text, text  # an argument is named by its metavar alone


def test_sweep_help_is_grouped():
    text = CliRunner().invoke(cli.app, ["sweep", "--help"], env={"COLUMNS": "100", "NO_COLOR": "1"}).output
    for panel in ("Model and data", "Training", "Pruning", "Measurement", "Landscape", "Grid, cluster and store"):
        assert f"─ {panel} " in text, panel
