"""YAML loading that remembers where every value came from.

Validation needs `lab.yml:12:5` for each problem, so the loader returns plain
Python values plus a table from key path to (line, column), both 1-based.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass
class Located:
    """Plain data from a YAML document and the position of every node in it."""

    data: Any
    source: str
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # The scalar text as written, so `fmode: 0644` reads as octal whatever YAML 1.1 says.
    raw: dict[Path_, str] = field(default_factory=dict)

    def where(self, path: Path_) -> str:
        """`file:line:col` of the deepest known node on `path`."""
        p = tuple(path)
        while p and p not in self.positions:
            p = p[:-1]
        line, col = self.positions.get(p, (1, 1))
        return f"{self.source}:{line}:{col}"


def dotted(path: Path_) -> str:
    """`guests.web.shares[1].fmode` from ('guests', 'web', 'shares', 1, 'fmode')."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


class _Loader(yaml.SafeLoader):
    pass


def load(text: str, source: str) -> Located:
    """Parse one YAML document; syntax errors become problems, not exceptions."""
    loc = Located(data=None, source=source)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        loc.problems.append(f"{where} YAML syntax: {exc.problem or exc}")
        return loc
    if node is None:
        loc.data = {}
        return loc
    loc.data = _convert(node, (), loc)
    return loc


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _key(node: yaml.Node) -> str:
    """A mapping key as written: `no:` is the guest "no", not False."""
    if isinstance(node, yaml.ScalarNode):
        return str(node.value)
    return str(_Loader("").construct_object(node, deep=True))


def _convert(node: yaml.Node, path: Path_, loc: Located) -> Any:
    loc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = _key(key_node)
            if key in seen:
                line = key_node.start_mark.line + 1
                col = key_node.start_mark.column + 1
                loc.problems.append(
                    f"{loc.source}:{line}:{col} {dotted((*path, key))}: duplicate key"
                )
            seen.add(key)
        # `<<: *anchor` merge keys: PyYAML puts the merged pairs first, so own keys win.
        try:
            _Loader("").flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or node.start_mark
            loc.problems.append(f"{loc.source}:{mark.line + 1}:{mark.column + 1} "
                                f"{dotted(path)}: {exc.problem}")
            return {}
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _key(key_node)
            child = (*path, key)
            out[key] = _convert(value_node, child, loc)
            loc.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), loc) for i, item in enumerate(node.value)]
    loc.raw[path] = str(node.value)
    return _Loader("").construct_object(node, deep=True)
