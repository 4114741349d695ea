"""Free-form `key=value` task arguments, split the way Ansible's parse_kv splits them:
on blanks outside quotes and outside Jinja2 blocks, each `key=value` a parameter, quotes
around a value removed. For command and shell the rest stays the command
(`_raw_params`), with only their own options (chdir=, creates=, ...) pulled out."""

from __future__ import annotations

import re
from typing import Any

from provision9p.errors import TaskError

#: The options command/shell take from a free-form line; anything else is the command.
RAW_OPTIONS = {"chdir", "creates", "removes", "executable", "stdin", "warn",
               "stdin_add_newline", "strip_empty_ends"}
#: Modules whose free-form text is a command, not parameters.
RAW_MODULES = {"command", "shell", "raw", "script"}

_KEY = re.compile(r"^([A-Za-z_][\w.-]*)=(.*)$", re.DOTALL)
_PAIRS = {"{{": "}}", "{%": "%}", "{#": "#}"}


def split_args(text: str) -> list[str]:
    """Words separated by blanks, keeping quoted text and Jinja2 blocks whole."""
    return [word for word, _ in _split_spans(text)]


def _split_spans(text: str) -> list[tuple[str, int]]:
    """split_args' words, each with where it starts in `text`."""
    words: list[tuple[str, int]] = []
    cur: list[str] = []
    start = 0
    quote = ""
    closers: list[str] = []
    i = 0
    while i < len(text):
        ch, two = text[i], text[i:i + 2]
        if quote:
            cur.append(ch)
            if ch == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif two in _PAIRS:
            closers.append(_PAIRS[two])
            cur.append(two)
            i += 1
        elif closers and two == closers[-1]:
            closers.pop()
            cur.append(two)
            i += 1
        elif ch in "'\"" and not closers:
            quote = ch
            cur.append(ch)
        elif ch.isspace() and not closers:
            if cur:
                words.append(("".join(cur), start))
                cur = []
            start = i + 1
        else:
            cur.append(ch)
        i += 1
    if quote or closers:
        raise TaskError(f"unbalanced quotes or braces in {text!r}")
    if cur:
        words.append(("".join(cur), start))
    return words


def unquote(value: str) -> str:
    """`'a b'` -> `a b`; a value quoted only in part (`a='b'c`) loses its quotes too."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        return inner.replace("\\" + value[0], value[0])
    if "'" not in value and '"' not in value:
        return value
    out, quote = [], ""
    for ch in value:
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"" and "{{" not in value:
            quote = ch
        else:
            out.append(ch)
    return "".join(out)


def parse_kv(text: str, module: str, free_form: bool = False) -> dict[str, Any]:
    """A free-form argument string as the module's parameters; `free_form` modules
    (include_vars, ...) keep the words that are not key=value as `_raw_params`."""
    raw_module = module in RAW_MODULES
    params: dict[str, Any] = {}
    rest: list[str] = []
    command = text  # a command keeps its own spacing and newlines (a `shell: |` script)
    for word, at in reversed(_split_spans(text)):
        m = _KEY.match(word)
        if m and (not raw_module or m.group(1) in RAW_OPTIONS):
            params[m.group(1)] = unquote(m.group(2))
            command = command[:at] + command[at + len(word):]
        else:
            rest.insert(0, word)
    if rest:
        if not raw_module and not free_form:
            raise TaskError(f"{module} takes key=value parameters, and {' '.join(rest)!r} "
                            "is not one",
                            hint="write `name=value` pairs, or the parameters as a mapping")
        params["_raw_params"] = command.strip() if raw_module else " ".join(rest)
    return params
