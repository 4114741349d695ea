"""Ansible's filters on data: merging, set algebra, flattening, serialisation,
combinatorics and numbers."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, MutableMapping, MutableSequence, Sequence
from typing import Any

import jinja2
import markupsafe
import yaml
from jinja2.filters import do_unique

from provision9p.errors import TaskError

LIST_MERGES = ("replace", "keep", "append", "prepend", "append_rp", "prepend_rp")


def _merge(low: Mapping[str, Any], high: Mapping[str, Any], recursive: bool,
           list_merge: str) -> dict[str, Any]:
    for side in (low, high):
        if not isinstance(side, Mapping):
            raise TaskError(f"combine expects dictionaries, got {side!r}")
    out = dict(low)
    for key, new in high.items():
        old = out.get(key)
        if key not in out:
            out[key] = new
        elif isinstance(old, MutableMapping) and isinstance(new, MutableMapping):
            out[key] = _merge(old, new, recursive, list_merge) if recursive else new
        elif isinstance(old, MutableSequence) and isinstance(new, MutableSequence):
            out[key] = _merge_lists(list(old), list(new), list_merge)
        else:
            out[key] = new
    return out


def _merge_lists(old: list[Any], new: list[Any], how: str) -> list[Any]:
    if how == "keep":
        return old
    if how == "append":
        return old + new
    if how == "prepend":
        return new + old
    if how == "append_rp":
        return [x for x in old if x not in new] + new
    if how == "prepend_rp":
        return new + [x for x in old if x not in new]
    return new


def combine(*terms: Any, recursive: bool = False, list_merge: str = "replace") -> Any:
    """Later dictionaries win; `[a, b] | combine` works too."""
    if list_merge not in LIST_MERGES:
        raise TaskError(f"combine: list_merge must be one of {', '.join(LIST_MERGES)}, "
                        f"not {list_merge!r}")
    dicts = flatten(terms, levels=1)
    if not dicts:
        return {}
    if len(dicts) == 1:
        return dicts[0]
    # Merged from the right, as Ansible does, so list_merge orders come out the same.
    result = dicts[-1]
    for d in reversed(dicts[:-1]):
        result = _merge(d, result, bool(recursive), list_merge)
    return result


def flatten(values: Any, levels: int | None = None, skip_nulls: bool = True) -> list[Any]:
    out: list[Any] = []
    for element in values:
        if skip_nulls and _is_null(element):
            continue
        if isinstance(element, list | tuple) and (levels is None or int(levels) >= 1):
            out.extend(flatten(element, None if levels is None else int(levels) - 1,
                               skip_nulls))
        else:
            out.append(element)
    return out


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value in ("None", "null"))


def _dedupe(values: Any) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


@jinja2.pass_environment
def unique(env: jinja2.Environment, values: Any, case_sensitive: bool | None = None,
           attribute: Any = None) -> list[Any]:
    """Jinja's unique (case-insensitive unless asked), falling back to equality for
    unhashable items such as dictionaries, as Ansible's does."""
    try:
        return list(do_unique(env, values, case_sensitive=bool(case_sensitive),
                              attribute=attribute))
    except TypeError:
        if case_sensitive is False or attribute:
            raise TaskError("unique: case_sensitive=false and attribute need hashable "
                            "items") from None
        return _dedupe(values)


def _set_order(values: list[Any]) -> bool:
    """Whether Ansible's set-based result has a fixed order here: hashable items whose
    hashes do not change between runs (numbers, booleans, None; not text)."""
    try:
        set(values)
    except TypeError:
        return False
    return not any(isinstance(v, str | bytes) for v in values)


# Ansible computes these with Python sets. Where that order is fixed (numbers) the result
# is the same list; where it varies between runs (text: hash randomisation) or sets cannot
# hold the items (dictionaries), the order of first appearance, which is one of the orders
# Ansible can produce, and stays the same from run to run.
def difference(a: Any, b: Any) -> list[Any]:
    a, b = list(a), list(b)
    if _set_order(a + b):
        return list(set(a) - set(b))
    return _dedupe(x for x in a if x not in b)


def intersect(a: Any, b: Any) -> list[Any]:
    a, b = list(a), list(b)
    if _set_order(a + b):
        return list(set(a) & set(b))
    return _dedupe(x for x in a if x in b)


def union(a: Any, b: Any) -> list[Any]:
    a, b = list(a), list(b)
    if _set_order(a + b):
        return list(set(a) | set(b))
    return _dedupe(a + b)


def symmetric_difference(a: Any, b: Any) -> list[Any]:
    a, b = list(a), list(b)
    if _set_order(a + b):
        return list(set(a) ^ set(b))
    both = intersect(a, b)
    return [x for x in union(a, b) if x not in both]


def dict2items(d: Any, key_name: str = "key", value_name: str = "value") -> list[dict[str, Any]]:
    if not isinstance(d, Mapping):
        raise TaskError(f"dict2items requires a dictionary, got {type(d).__name__}")
    return [{key_name: k, value_name: v} for k, v in d.items()]


def items2dict(items: Any, key_name: str = "key", value_name: str = "value") -> dict[Any, Any]:
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise TaskError(f"items2dict requires a list, got {type(items).__name__}")
    try:
        return {i[key_name]: i[value_name] for i in items}
    except (KeyError, TypeError):
        raise TaskError(f"items2dict requires dictionaries with the keys {key_name!r} and "
                        f"{value_name!r}, got {items!r}") from None


def subelements(obj: Any, key: str, skip_missing: bool = False) -> list[tuple[Any, Any]]:
    """[(item, sub) for each sub in item[key]]: a loop over users' keys, say. The key may
    be a dotted path ('ssh.keys')."""
    items = list(obj.values()) if isinstance(obj, Mapping) else obj
    if not isinstance(items, list | tuple):
        raise TaskError("subelements: the input must be a list or a dictionary")
    if not isinstance(key, str):
        raise TaskError("subelements: the key must be a string")
    out: list[tuple[Any, Any]] = []
    for item in items:
        value = item
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                if skip_missing:
                    value = None
                    break
                raise TaskError(f"subelements: could not find {key!r} in {item!r}",
                                hint="skip_missing=True skips such items")
            value = value[part]
        if value is None and skip_missing:
            continue
        if not isinstance(value, list):
            raise TaskError(f"subelements: {key!r} of {item!r} is not a list")
        out.extend((item, sub) for sub in value)
    return out


@jinja2.pass_environment
def extract(env: jinja2.Environment, item: Any, container: Any, morekeys: Any = None) -> Any:
    keys = [item] + (morekeys if isinstance(morekeys, list) else
                     [] if morekeys is None else [morekeys])
    value = container
    for key in keys:
        value = env.getitem(value, key)
    return value


def to_json(value: Any, **kwargs: Any) -> str:
    return json.dumps(value, default=_json_default, **kwargs)


def to_nice_json(value: Any, indent: int = 4, sort_keys: bool = True, **kwargs: Any) -> str:
    kwargs.pop("separators", None)
    return to_json(value, indent=indent, sort_keys=sort_keys, separators=(",", ": "), **kwargs)


def _json_default(value: Any) -> Any:
    if isinstance(value, set | tuple):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _Dumper(yaml.SafeDumper):
    """Safe YAML that also writes tuples (zip, product) and Jinja's Markup text."""


_Dumper.add_representer(tuple, lambda d, v: d.represent_list(list(v)))
_Dumper.add_representer(markupsafe.Markup,
                        lambda d, v: d.represent_str(str(v)))


def to_yaml(value: Any, *_: Any, default_flow_style: bool | None = None, **kwargs: Any) -> str:
    return str(yaml.dump(value, Dumper=_Dumper, allow_unicode=True,
                         default_flow_style=default_flow_style, **kwargs))


def to_nice_yaml(value: Any, indent: int = 4, *_: Any, default_flow_style: bool = False,
                 **kwargs: Any) -> str:
    return to_yaml(value, indent=indent, default_flow_style=default_flow_style, **kwargs)


def from_json(value: Any, **kwargs: Any) -> Any:
    return json.loads(value, **kwargs)


def from_yaml(value: Any) -> Any:
    return yaml.safe_load(value) if isinstance(value, str) else value


def from_yaml_all(value: Any) -> Any:
    if value is None:
        return []
    return list(yaml.safe_load_all(value)) if isinstance(value, str) else value


_SIZES = {"Y": 1 << 80, "Z": 1 << 70, "E": 1 << 60, "P": 1 << 50, "T": 1 << 40,
          "G": 1 << 30, "M": 1 << 20, "K": 1 << 10, "B": 1}
_UNIT_WORDS = {"B": ("byte", "bit"), "K": ("kilobyte", "kilobit"), "M": ("megabyte", "megabit"),
               "G": ("gigabyte", "gigabit"), "T": ("terabyte", "terabit"),
               "P": ("petabyte", "petabit"), "E": ("exabyte", "exabit"),
               "Z": ("zetabyte", "zetabit"), "Y": ("yottabyte", "yottabit")}


def human_readable(size: Any, isbits: bool = False, unit: str | None = None) -> str:
    """1048576 -> '1.00 MB' (bits: 'Mb'); unit= forces the unit."""
    try:
        number = float(size)
    except (TypeError, ValueError):
        raise TaskError(f"human_readable: {size!r} is not a number") from None
    base = "bits" if isbits else "Bytes"
    for suffix, limit in _SIZES.items():  # largest first
        if (unit is None and number >= limit) or (unit is not None
                                                  and unit.upper() == suffix[0]):
            break
    label = base if limit == 1 else suffix + base[0]
    return f"{number / limit:.2f} {label}"


def human_to_bytes(size: Any, default_unit: str | None = None, isbits: bool = False) -> int:
    """'10M' -> 10485760; '1Mb' only with isbits; a bare number uses default_unit."""
    import re

    m = re.search(r"^([0-9]*\.?[0-9]+)(?:\s*([A-Za-z]+))?\s*$", str(size))
    if m is None:
        raise TaskError(f"human_to_bytes: cannot interpret {size!r}")
    number = float(m.group(1))
    unit = m.group(2) or default_unit
    if unit is None:
        return round(number)
    key = unit[0].upper()
    if key not in _SIZES:
        raise TaskError(f"human_to_bytes: unknown unit in {size!r}",
                        hint="the suffix must be one of " + ", ".join(_SIZES))
    if len(unit) > 1:
        word = _UNIT_WORDS[key][1 if isbits else 0]
        symbol = key + ("b" if isbits else "B") if key != "B" else ("b" if isbits else "B")
        if unit.lower() != word and unit != symbol:
            raise TaskError(f"human_to_bytes: {size!r} is not a valid size "
                            f"(expected {symbol} or {key})")
    return round(number * _SIZES[key])


def log(x: Any, base: float = math.e) -> float:
    try:
        return math.log10(x) if base == 10 else math.log(x, base)
    except TypeError:
        raise TaskError("log() can only be used on numbers") from None


def power(x: Any, y: Any) -> float:
    try:
        return math.pow(x, y)
    except TypeError:
        raise TaskError("pow() can only be used on numbers") from None


def root(x: Any, base: float = 2) -> float:
    try:
        return math.sqrt(x) if base == 2 else math.pow(x, 1.0 / float(base))
    except (TypeError, ValueError):
        raise TaskError("root() can only be used on numbers") from None


def rekey_on_member(data: Any, key: str, duplicates: str = "error") -> dict[Any, Any]:
    if duplicates not in ("error", "overwrite"):
        raise TaskError(f"rekey_on_member: duplicates must be error or overwrite, "
                        f"not {duplicates!r}")
    items = data.values() if isinstance(data, Mapping) else data
    out: dict[Any, Any] = {}
    for item in items:
        if not isinstance(item, Mapping):
            raise TaskError("rekey_on_member: list item is not a dictionary")
        if key not in item:
            raise TaskError(f"rekey_on_member: key {key!r} was not found in {item!r}")
        if item[key] in out and duplicates == "error":
            raise TaskError(f"rekey_on_member: key {item[key]!r} is not unique")
        out[item[key]] = item
    return out


def _unsupported(name: str) -> Any:
    def refuse(*_: Any, **__: Any) -> Any:
        raise TaskError(UNSUPPORTED[name])
    return refuse


#: Filters Ansible users meet that provision9p refuses, with why; checked at load.
UNSUPPORTED = {
    "json_query": "not supported by provision9p: the json_query filter (community.general; "
                  "it needs the jmespath library); use selectattr/map/json filters instead",
    "vault": "not supported by provision9p: the vault filter (Ansible Vault)",
    "unvault": "not supported by provision9p: the unvault filter (Ansible Vault)",
}


def _listed(fn: Any) -> Any:
    """Combinatorics as lists of lists, as Ansible's results come out."""
    return lambda *args, **kwargs: [list(t) for t in fn(*args, **kwargs)]


DATA_FILTERS: dict[str, Any] = {
    "combine": combine, "flatten": flatten, "unique": unique, "difference": difference,
    "intersect": intersect, "union": union, "symmetric_difference": symmetric_difference,
    "dict2items": dict2items, "items2dict": items2dict, "subelements": subelements,
    "extract": extract, "to_json": to_json, "to_nice_json": to_nice_json,
    "to_yaml": to_yaml, "to_nice_yaml": to_nice_yaml, "from_json": from_json,
    "from_yaml": from_yaml, "from_yaml_all": from_yaml_all,
    "human_readable": human_readable, "human_to_bytes": human_to_bytes,
    "log": log, "pow": power, "root": root, "rekey_on_member": rekey_on_member,
    "product": _listed(itertools.product), "permutations": _listed(itertools.permutations),
    "combinations": _listed(itertools.combinations), "zip": _listed(zip),
    "zip_longest": _listed(itertools.zip_longest),
    **{name: _unsupported(name) for name in ("json_query", "vault", "unvault")},
}
