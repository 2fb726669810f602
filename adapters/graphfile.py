"""Graph files to and from the toolkit's graph (through igraph, see :mod:`emergence.adapters.igraph_graph`).

Reading goes through igraph, so every text format igraph parses works: GraphML,
GML, edge lists, NCOL, LGL, Pajek and DL. The active mask, the weights and the
layer ids come from node and edge attributes whose names are configurable
(``active``, ``weight`` and ``layer`` by default). Formats without node attributes
(edge lists, NCOL, LGL, Pajek) take the active nodes as an explicit list instead.
igraph's pickle formats are refused: unpickling runs arbitrary code.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emergence.adapters._graphml_check import check_graphml
from emergence.adapters.atomic import atomic_path
from emergence.adapters.igraph_graph import from_igraph, to_igraph
from emergence.errors import FileFormatError, GraphError, first_line
from emergence.graphdata import Graph
from emergence.validate import validate

__all__ = ["FORMATS", "read_graph", "read_node_list", "write_graph"]

#: File name endings and the igraph format each one is read and written as.
FORMATS: dict[str, str] = {
    ".graphml": "graphml",
    ".xml": "graphml",
    ".gml": "gml",
    ".edges": "edgelist",
    ".edgelist": "edgelist",
    ".el": "edgelist",
    ".txt": "edgelist",
    ".ncol": "ncol",
    ".lgl": "lgl",
    ".net": "pajek",
    ".pajek": "pajek",
    ".dl": "dl",
    ".pt": "torch",
}
_READABLE = {"graphml", "gml", "edgelist", "ncol", "lgl", "pajek", "dl", "torch"}
_WRITABLE = {"graphml", "gml", "edgelist", "ncol", "lgl", "pajek", "dot", "leda", "torch"}


def _format(path: Path, fmt: str | None, allowed: set[str]) -> str:
    if fmt is None:
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise FileFormatError(
                f"cannot tell the format of {path.name!r} from its ending; pass a format "
                f"({', '.join(sorted(allowed))})"
            )
    fmt = fmt.lower()
    if fmt in ("pickle", "picklez"):
        raise FileFormatError("pickle graphs are refused: unpickling runs arbitrary code; save as GraphML instead")
    if fmt not in allowed:
        raise FileFormatError(f"format {fmt!r} is not supported here; use one of {', '.join(sorted(allowed))}")
    return fmt


def read_graph(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    active_attr: str = "active",
    weight_attr: str | None = "weight",
    layer_attr: str | None = "layer",
    active: Iterable[Any] | None = None,
) -> Graph:
    """Read a directed graph file into the toolkit's graph.

    Parameters
    ----------
    path : str or path-like
        The file. Its ending picks the format unless ``format`` is given (see :data:`FORMATS`); an edge
        list (``.txt``, ``.edges`` ...) whose lines name their nodes (``numpy scipy``) rather than number
        them is read as NCOL, names kept.
    format : str, optional
        One of graphml, gml, edgelist, ncol, lgl, pajek, dl, or torch (a ``.pt`` graph
        written by :func:`write_graph`).
    active_attr, weight_attr, layer_attr, active
        As in :func:`from_igraph`.

    Returns
    -------
    emergence.Graph

    Raises
    ------
    FileFormatError
        If the file is missing, unreadable, not in the format, or a pickle.
    GraphError
        If the graph is undirected or its attributes are missing or bad.

    Examples
    --------
    >>> from pathlib import Path
    >>> g = read_graph(Path(__file__).parent.parent / "data" / "example.graphml")
    >>> g.num_nodes > 0
    True
    """
    import igraph as ig

    p = Path(path)
    fmt = _format(p, format, _READABLE)
    if not p.is_file():
        raise FileFormatError(f"no such file: {str(p)!r}")
    if format is None and fmt == "edgelist" and _has_names(p):  # "numpy scipy" lines: named nodes
        return _read_named_edges(p, weight_attr, active)
    if fmt == "torch":
        return _read_torch(p)
    if fmt == "graphml":
        check_graphml(p, None if active is not None else active_attr)
    try:
        with _quiet_parser():
            g = ig.Graph.Read(str(p), format=fmt)
    except Exception as exc:  # igraph raises InternalError, ValueError, OSError ... for bad files
        detail = first_line(exc).split(" -- ")[0]
        raise FileFormatError(f"could not read {p.name!r} as {fmt}: {detail}") from exc
    if fmt in ("edgelist", "ncol", "lgl", "pajek", "dl") and active is None and active_attr not in g.vs.attributes():
        raise GraphError(
            f"{p.name!r} is a {fmt} file, which carries no node attributes; list the active nodes "
            "explicitly (names or indices), or save the graph as GraphML or GML with an 'active' attribute"
        )
    return from_igraph(g, active_attr=active_attr, weight_attr=weight_attr, layer_attr=layer_attr, active=active)


def _read_named_edges(path: Path, weight_attr: str | None, active: Any) -> Graph:
    """An edge list of named nodes: ``source target [weight]`` per line, ``#`` and ``%`` comments; nodes numbered in
    order of first appearance. The active nodes must be listed (the file carries no node attributes)."""
    import pandas as pd

    from emergence.adapters.igraph_graph import _active_from_list
    from emergence.graph import graph as make_graph

    if active is None:
        raise GraphError(f"{path.name!r} is an edge list, which carries no node attributes; list the active nodes "
                         "explicitly (names or indices), or save the graph as GraphML or GML with an 'active' "
                         "attribute")
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, comment="#", dtype=str,
                            skip_blank_lines=True)
    except Exception as exc:  # pandas raises ParserError, ValueError, UnicodeDecodeError ...
        raise FileFormatError(f"could not read {path.name!r} as an edge list: {first_line(exc)}") from exc
    table = table[~table[0].astype(str).str.startswith("%")] if len(table) else table
    if table.shape[1] < 2 and len(table):
        raise FileFormatError(f"could not read {path.name!r} as an edge list: a line holds one name, not a pair")
    pairs = table.iloc[:, :2].to_numpy(dtype=object) if len(table) else np.zeros((0, 2), dtype=object)
    codes, names = pd.factorize(pairs.reshape(-1), sort=False)
    ei = torch.from_numpy(codes.reshape(-1, 2).T.astype(np.int64).copy())
    extra: dict[str, Any] = {}
    if weight_attr is not None and table.shape[1] >= 3 and len(table):
        try:
            extra["edge_weight"] = torch.from_numpy(table.iloc[:, 2].astype(float).to_numpy())
        except ValueError as exc:
            raise FileFormatError(f"could not read {path.name!r}: a third column that is not a weight "
                                  f"({first_line(exc)})") from exc
    labels = [str(v) for v in names]
    return make_graph(ei, len(labels), _active_from_list(active, labels), names=labels, **extra)


def _has_names(path: Path, limit: int = 1 << 16) -> bool:
    r"""Whether an edge list (its first ``limit`` bytes) names its nodes rather than numbering them.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
    ...     _ = f.write("# deps\nnumpy scipy\n")
    >>> _has_names(Path(f.name)); os.remove(f.name)
    True
    """
    with open(path, "rb") as f:
        head = f.read(limit).decode("utf-8", errors="replace")
    for line in head.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", "%")):
            continue
        if any(not t.lstrip("-").isdigit() for t in fields[:2]):
            return True
    return False


@contextmanager
def _quiet_parser() -> Iterator[None]:
    """igraph's C parsers print warnings on file descriptor 2 and as Python warnings: keep both off stderr.

    The caller turns a failed parse into one sentence; a parse that succeeds has nothing to say.
    """
    import tempfile
    import warnings

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _read_torch(p: Path) -> Graph:
    """A graph saved by :func:`write_graph` as ``.pt`` (a plain dict, loaded without unpickling code)."""
    from emergence.adapters.bounded import load_weights

    try:
        d = load_weights(str(p), p.name)
    except FileFormatError:
        raise
    except Exception as exc:  # weights-only unpickler errors, truncated archives ...
        raise FileFormatError(f"could not read {p.name!r} as a saved graph (plain tensors only): "
                              f"{first_line(exc)}") from exc
    if not isinstance(d, dict) or "edge_index" not in d:
        raise FileFormatError(f"{p.name!r} is not a graph saved by emergence (no edge_index)")
    return validate(Graph.from_dict(d))


def read_node_list(path: str | os.PathLike[str]) -> list[str]:
    """Read node names or indices, one per line (blank lines and ``#`` comments skipped).

    Parameters
    ----------
    path : str or path-like
        A text file.

    Returns
    -------
    list of str

    Raises
    ------
    FileFormatError
        If the file is missing or not text.

    Examples
    --------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "active.txt")
    >>> _ = open(f, "w").write("a\\n# comment\\n\\nb\\n")
    >>> read_node_list(f)
    ['a', 'b']
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileFormatError(f"no such file: {str(p)!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"could not read {str(p)!r} as a text list of nodes: {exc}") from exc
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def write_graph(
    graph: Graph,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    active_attr: str = "active",
    weight_attr: str = "weight",
    layer_attr: str = "layer",
) -> Path:
    """Write the toolkit's graph to a file through igraph, atomically (temp file, then rename).

    Parameters
    ----------
    graph : emergence.Graph
        The graph.
    path : str or path-like
        Destination; its ending picks the format unless ``format`` is given.
    format : str, optional
        One of graphml, gml, edgelist, ncol, lgl, pajek, dot, leda, or torch (the
        graph as a plain dict in a ``.pt`` file, loadable with
        ``torch.load(path, weights_only=True)`` and ``Graph.from_dict``).
    active_attr, weight_attr, layer_attr : str
        Attribute names, as in :func:`to_igraph`.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    FileFormatError
        If the format is unknown or the file cannot be written.

    Examples
    --------
    >>> import tempfile, os
    >>> from emergence import graph
    >>> out = write_graph(graph([[0], [1]], 2, [False, True]), os.path.join(tempfile.mkdtemp(), "g.gml"))
    >>> read_graph(out).active.tolist()
    [False, True]
    """
    p = Path(path)
    if p.is_dir():
        raise FileFormatError(f"cannot write {str(p)!r}: it is a folder; name a file")
    fmt = _format(p, format, _WRITABLE)
    if fmt == "torch":
        validate(graph)
        with atomic_path(p) as tmp:
            torch.save(graph.to_dict(), tmp)
        return p
    g = to_igraph(graph, active_attr=active_attr, weight_attr=weight_attr, layer_attr=layer_attr)
    if fmt == "gml":  # GML has no booleans
        g.vs[active_attr] = [int(v) for v in g.vs[active_attr]]
    with atomic_path(p) as tmp:
        try:
            g.write(str(tmp), format=fmt)
        except Exception as exc:  # igraph's errors carry no common type
            raise FileFormatError(f"could not write {str(p)!r}: {exc}") from exc
    return p
