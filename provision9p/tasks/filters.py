"""The Ansible filters roles use most, so templates written for Ansible render here."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

import yaml


def dict2items(d: Mapping[str, Any], key_name: str = "key",
               value_name: str = "value") -> list[dict[str, Any]]:
    return [{key_name: k, value_name: v} for k, v in d.items()]


def items2dict(items: list[Mapping[str, Any]], key_name: str = "key",
               value_name: str = "value") -> dict[Any, Any]:
    return {i[key_name]: i[value_name] for i in items}


def to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "1", "true", "y")
    return bool(value)


def regex_replace(value: str, pattern: str, replacement: str = "") -> str:
    return re.sub(pattern, replacement, value)


def subelements(items: list[Mapping[str, Any]], key: str,
                skip_missing: bool = False) -> list[tuple[Mapping[str, Any], Any]]:
    """[(item, sub) for each sub in item[key]]: a loop over users' keys, say."""
    out: list[tuple[Mapping[str, Any], Any]] = []
    for item in items:
        if key not in item:
            if skip_missing:
                continue
            raise KeyError(f"subelements: an item has no {key!r}")
        out.extend((item, sub) for sub in item[key] or [])
    return out


#: Ansible's tests on registered results: `when: result is changed`.
TESTS: dict[str, Callable[..., bool]] = {
    "changed": lambda r: bool(isinstance(r, Mapping) and r.get("changed")),
    "failed": lambda r: bool(isinstance(r, Mapping) and r.get("failed")),
    "succeeded": lambda r: not (isinstance(r, Mapping) and r.get("failed")),
    "success": lambda r: not (isinstance(r, Mapping) and r.get("failed")),
    "skipped": lambda r: bool(isinstance(r, Mapping) and r.get("skipped")),
}

#: `default(omit)`: a parameter rendered to this is left out, as if never written.
OMIT = "__provision9p_omit__"


FILTERS: dict[str, Callable[..., Any]] = {
    "subelements": subelements,
    "dict2items": dict2items, "items2dict": items2dict, "bool": to_bool,
    "to_json": json.dumps, "to_nice_json": lambda v: json.dumps(v, indent=4, sort_keys=True),
    "to_yaml": lambda v: yaml.safe_dump(v, default_flow_style=False),
    "regex_replace": regex_replace, "basename": os.path.basename, "dirname": os.path.dirname,
    "quote": shlex.quote,
}
