"""GraphML checked before igraph parses it: no DOCTYPE or entities, every edge between declared nodes,
the activity attribute on every node (or a declared default), bounded counts.

igraph's reader (libxml2) expands entities, prints parser noise on stderr, creates nodes an edge
merely names, merges duplicate ids and fills a missing attribute with ``False``: each of those
would measure a graph other than the one in the file without a word. This pass reads the file
once with expat, refusing DOCTYPE and entity declarations outright (as defusedxml does), and
collects the ids; the checks are set operations on them.
"""

from __future__ import annotations

import xml.parsers.expat
from pathlib import Path
from typing import Any, NoReturn

from emergence.errors import FileFormatError, GraphError

__all__ = ["check_graphml", "MAX_GRAPH_ELEMENTS"]

#: Nodes plus edges a graph file may declare.
MAX_GRAPH_ELEMENTS = 200_000_000


class _Refused(Exception):
    pass


def check_graphml(path: Path, active_attr: str | None, max_elements: int = MAX_GRAPH_ELEMENTS) -> None:
    """Refuse a GraphML file that igraph would read as another graph, or that is hostile.

    Parameters
    ----------
    path : Path
    active_attr : str or None
        The node attribute that must be present on every node (None: not checked).
    max_elements : int
        Nodes plus edges allowed.

    Raises
    ------
    FileFormatError
        DOCTYPE or entity declarations, malformed XML, too many elements.
    GraphError
        Duplicate node ids, edges to undeclared nodes, nodes without the activity attribute.
    """
    keys: dict[str, str] = {}  # key id -> attr.name, for node keys
    defaults: set[str] = set()
    nodes: list[str] = []
    ends: set[str] = set()
    with_attr: list[str] = []
    state: dict[str, Any] = {"node": None, "key": None, "count": 0}

    def refuse_decl(*_args: Any) -> NoReturn:
        raise _Refused("declares a DOCTYPE or entities, which GraphML never needs (entity expansion and external "
                       "entities are how XML files attack a reader); refused")

    def start(name: str, attrs: dict[str, str]) -> None:
        local = name.rsplit("}", 1)[-1].rsplit(" ", 1)[-1]
        if local == "node":
            state["count"] += 1
            state["node"] = attrs.get("id")
            nodes.append(attrs.get("id", ""))
        elif local == "edge":
            state["count"] += 1
            ends.add(attrs.get("source", ""))
            ends.add(attrs.get("target", ""))
        elif local == "key" and attrs.get("for") in ("node", "all", None):
            keys[attrs.get("id", "")] = attrs.get("attr.name", attrs.get("id", ""))
            state["key"] = attrs.get("id", "")
        elif local == "default" and state["key"] is not None:
            defaults.add(keys.get(state["key"], ""))
        elif local == "data" and state["node"] is not None and keys.get(attrs.get("key", "")) == active_attr:
            with_attr.append(state["node"])
        if state["count"] > max_elements:
            raise _Refused(f"declares more than {max_elements:,} nodes and edges; refused")

    def end(name: str) -> None:
        local = name.rsplit("}", 1)[-1].rsplit(" ", 1)[-1]
        if local == "node":
            state["node"] = None
        elif local == "key":
            state["key"] = None

    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.StartDoctypeDeclHandler = refuse_decl
    parser.EntityDeclHandler = refuse_decl
    parser.ExternalEntityRefHandler = refuse_decl
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        with open(path, "rb") as fh:
            parser.ParseFile(fh)
    except _Refused as exc:
        raise FileFormatError(f"{path.name!r} {exc}") from exc
    except xml.parsers.expat.ExpatError as exc:
        raise FileFormatError(f"could not read {path.name!r} as graphml: {exc}") from exc
    declared = set(nodes)
    if len(declared) != len(nodes):
        seen: set[str] = set()
        dup = next(n for n in nodes if n in seen or seen.add(n))  # type: ignore[func-returns-value]
        raise GraphError(f"{path.name!r} declares node {dup!r} more than once; node ids must be unique")
    undeclared = ends - declared
    if undeclared:
        raise GraphError(f"{path.name!r} has an edge to {sorted(undeclared)[0]!r}, which is not a declared node "
                         f"({len(undeclared)} such ids); declare every node the edges name")
    if active_attr is not None and active_attr in keys.values() and active_attr not in defaults:
        missing = declared - set(with_attr)
        if missing:
            raise GraphError(f"{path.name!r}: {len(missing)} of {len(declared)} nodes have no {active_attr!r} "
                             f"value (e.g. {sorted(missing)[0]!r}) and the key declares no default; give every "
                             "node a value")
