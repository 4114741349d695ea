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
    """Refuses nesting past MAX_DEPTH where it starts, with its line and column: PyYAML's
    composer recurses, and letting Python's stack give out took over a second of CPU."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep: no lab file is",
                    self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# A lab file is hand-written: a few hundred nodes. Aliases may repeat a subtree, but a
# file whose aliases expand past this is a "billion laughs" bomb, refused before it costs
# more than a few MB. Nesting deeper than this is no lab either (and Python's own stack
# would give out a little further on).
MAX_ALIAS_NODES = 10_000
MAX_DEPTH = 100


class _Bounded(Exception):
    """Conversion stopped: the problem is recorded, nothing sound is left to check."""


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
    except yaml.reader.ReaderError as exc:
        # control characters and NUL bytes: PyYAML gives a character index, not a mark
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        loc.problems.append(f"{source}:{line}:{col} YAML syntax: the character "
                            f"{char!r} is not allowed in a YAML file")
        return loc
    except RecursionError:
        loc.problems.append(f"{source}:1:1 YAML syntax: nested too deeply to be a lab file")
        return loc
    if node is None:
        loc.data = {}
        return loc
    try:
        loc.data = _Converter(loc).convert(node, ())
    except _Bounded:
        loc.data = None
    return loc


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Converter:
    """Node graph -> plain data, positions and raw scalars, with aliases bounded."""

    def __init__(self, loc: Located) -> None:
        self.loc = loc
        self.constructor = _Loader("")
        self.visited: set[int] = set()
        self.expanded = 0  # nodes converted a second time or more, through an alias
        self.stack: list[int] = []

    def _stop(self, node: yaml.Node, path: Path_, message: str) -> _Bounded:
        mark = node.start_mark
        self.loc.problems.append(f"{self.loc.source}:{mark.line + 1}:{mark.column + 1} "
                                 f"{dotted(path)}: {message}")
        return _Bounded()

    def _problem(self, node: yaml.Node, path: Path_, message: str) -> None:
        mark = node.start_mark
        self.loc.problems.append(f"{self.loc.source}:{mark.line + 1}:{mark.column + 1} "
                                 f"{dotted(path)}: {message}")

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            if "could not determine a constructor" in str(exc.problem):
                self._problem(node, path, f"not supported by provision9p: the YAML tag "
                                          f"{node.tag}")
            else:
                self._problem(node, path, f"cannot read this value: {exc.problem}")
        except (ValueError, TypeError, OverflowError) as exc:
            # `!!int abc`, `!!float x`, or an integer past Python's digit limit
            kind = node.tag.rsplit(":", 1)[-1]
            self._problem(node, path, f"cannot read {str(node.value)[:40]!r} as {kind}: {exc}")
        return None

    def _key(self, node: yaml.Node, path: Path_) -> str:
        """A mapping key as written: `no:` is the guest "no", not False."""
        if isinstance(node, yaml.ScalarNode):
            return str(node.value)
        self._problem(node, path, "a mapping key must be a plain name, not a list or mapping")
        return f"?{node.start_mark.line + 1}:{node.start_mark.column + 1}"

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        ident = id(node)
        if ident in self.stack:
            raise self._stop(node, path, "a YAML alias that contains itself (recursive "
                                         "anchor) cannot be expanded")
        if ident in self.visited:
            self.expanded += 1
            if self.expanded > MAX_ALIAS_NODES:
                raise self._stop(node, path, f"YAML aliases expand to more than "
                                 f"{MAX_ALIAS_NODES} values; a lab file this size is a "
                                 "mistake or a 'billion laughs' attack")
        self.visited.add(ident)
        if len(self.stack) >= MAX_DEPTH:
            raise self._stop(node, path, f"nested more than {MAX_DEPTH} levels deep")
        self.stack.append(ident)
        try:
            return self._convert(node, path)
        finally:
            self.stack.pop()

    def _convert(self, node: yaml.Node, path: Path_) -> Any:
        loc = self.loc
        loc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        loc.raw[path] = str(node.value)
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        loc = self.loc
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, path)
            if key in seen:
                self._problem(key_node, (*path, key), "duplicate key")
            seen.add(key)
        # `<<: *anchor` merge keys: PyYAML puts the merged pairs first, so own keys win.
        # It edits the node in place: a copy keeps an anchored node the same for its aliases.
        flat = yaml.MappingNode(node.tag, list(node.value), node.start_mark, node.end_mark)
        try:
            self.constructor.flatten_mapping(flat)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or node.start_mark
            loc.problems.append(f"{loc.source}:{mark.line + 1}:{mark.column + 1} "
                                f"{dotted(path)}: {exc.problem}")
            return {}
        out: dict[str, Any] = {}
        for key_node, value_node in flat.value:
            key = self._key(key_node, path) if isinstance(key_node, yaml.ScalarNode) \
                else f"?{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}"
            child = (*path, key)
            out[key] = self.convert(value_node, child)
            loc.positions[child] = (key_node.start_mark.line + 1,
                                    key_node.start_mark.column + 1)
        return out
