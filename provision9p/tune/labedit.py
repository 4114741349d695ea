"""Set one scalar in a lab file by a text edit at its YAML node, keeping everything else.

A YAML round trip through PyYAML would drop the comments and re-flow the layout, so
the new value is spliced in at the node's own character positions; the result is
parsed again and compared with the old data plus the one change before it is written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from provision9p.errors import UsageError

Key = str | int


def _child(node: yaml.Node, key: Key) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(key, str):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                found: yaml.Node = v
                return found
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) \
            and 0 <= key < len(node.value):
        child: yaml.Node = node.value[key]
        return child
    return None


def share_index(text: str, guest: str, tag: str) -> int | None:
    """Where the share `tag` sits in the guest's own `shares:` list of the file."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    shares = None if root is None else _walk(root, ("guests", guest, "shares"))[0]
    if not isinstance(shares, yaml.SequenceNode):
        return None
    for i, item in enumerate(shares.value):
        found = _child(item, "mount_tag")
        if isinstance(found, yaml.ScalarNode) and found.value == tag:
            return i
    return None


def _walk(root: yaml.Node, path: tuple[Key, ...]) -> tuple[yaml.Node, tuple[Key, ...]]:
    """The deepest node on `path` that exists, and the keys still missing below it."""
    node = root
    for i, key in enumerate(path):
        child = _child(node, key)
        if child is None:
            return node, path[i:]
        node = child
    return node, ()


def _flow(keys: tuple[Key, ...], value: str) -> str:
    """`a: {b: value}` for the missing keys, written inside a flow mapping."""
    out = value
    for key in reversed(keys[1:]):
        out = f"{{{key}: {out}}}"
    return f"{keys[0]}: {out}"


def _block(keys: tuple[Key, ...], value: str, indent: str) -> list[str]:
    """The missing keys as block lines, each nested two more spaces."""
    lines = []
    for depth, key in enumerate(keys):
        tail = f" {value}" if depth == len(keys) - 1 else ""
        lines.append(f"{indent}{'  ' * depth}{key}:{tail}")
    return lines


def set_scalar(text: str, path: tuple[Key, ...], value: int | str) -> str:
    """`text` with the scalar at `path` set to `value` (added with its missing parent
    mappings when absent); comments, order and layout stay as they were."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        raise UsageError("the lab file is empty")
    node, missing = _walk(root, path)
    shown = str(value)
    if not missing:
        if not isinstance(node, yaml.ScalarNode):
            raise UsageError(f"{'.'.join(map(str, path))} is not a single value in the lab")
        new = text[:node.start_mark.index] + shown + text[node.end_mark.index:]
    elif not isinstance(node, yaml.MappingNode) or not node.value \
            or any(isinstance(k, int) for k in missing):
        raise UsageError(f"cannot add {'.'.join(map(str, path))} to the lab file here",
                         hint=f"add `{path[-1]}: {shown}` by hand")
    elif node.flow_style:
        close = node.end_mark.index - 1  # the `}`
        new = text[:close] + ", " + _flow(missing, shown) + text[close:]
    else:
        new = _block_insert(text, node, missing, shown)
    _check_same_but(text, new, path, value)
    return new


def _block_insert(text: str, node: yaml.MappingNode, missing: tuple[Key, ...],
                  shown: str) -> str:
    first_key = node.value[0][0]
    indent = " " * int(first_key.start_mark.column)
    last_key, last_value = node.value[-1]
    lines = _block(missing, shown, indent)
    if isinstance(last_value, yaml.ScalarNode) and last_value.style in (None, "'", "\"") \
            and last_value.end_mark.line == last_key.start_mark.line:
        # After the mapping's last line (its comment stays on that line).
        eol = text.find("\n", last_value.end_mark.index)
        eol = len(text) if eol < 0 else eol
        return text[:eol] + "".join("\n" + line for line in lines) + text[eol:]
    # Otherwise as the mapping's first key: its position is exact whatever follows.
    at = first_key.start_mark.index
    head = lines[0].lstrip() + "".join("\n" + line for line in lines[1:])
    return text[:at] + head + "\n" + indent + text[at:]


def _set(data: Any, path: tuple[Key, ...], value: int | str) -> None:
    for key in path[:-1]:
        if isinstance(data, dict) and key not in data:
            data[key] = {}
        data = data[key]
    data[path[-1]] = value


def _check_same_but(old: str, new: str, path: tuple[Key, ...], value: int | str) -> None:
    """The edit changed exactly the one value: otherwise nothing is written."""
    want = yaml.safe_load(old)
    _set(want, path, value)
    try:
        got = yaml.safe_load(new)
    except yaml.YAMLError as exc:
        raise UsageError(f"editing the lab file would break it ({exc})",
                         hint="set the value by hand") from exc
    if got != want:
        raise UsageError("editing the lab file would change more than the one value",
                         hint="set the value by hand")


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename, keeping its permission bits."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
