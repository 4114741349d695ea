"""Jinja2 as Ansible uses it: argument templating that keeps a lone expression's type,
variables that are templates of other variables, conditions, and template files."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jinja2
from jinja2.nativetypes import NativeEnvironment

from provision9p.errors import TaskError
from provision9p.tasks.filters import FILTERS, TESTS
from provision9p.tasks.lookups import JINJA_GLOBALS

_native = NativeEnvironment(undefined=jinja2.StrictUndefined)
_text = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
# The template module's Jinja2 settings in Ansible: a block tag eats its newline.
_files = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                            trim_blocks=True)
for _env in (_native, _text, _files):
    _env.filters.update(FILTERS)
    _env.tests.update(TESTS)
    _env.globals.update(JINJA_GLOBALS)  # lookup(), query(), q()


@functools.lru_cache(maxsize=4096)
def _compiled(native: bool, source: str) -> jinja2.Template:
    return (_native if native else _text).from_string(source)


def templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(templated(v) for v in value.values())
    if isinstance(value, list):
        return any(templated(v) for v in value)
    return False


def render(value: Any, variables: dict[str, Any]) -> Any:
    """Templating as Ansible does it: '{{ x }}' alone keeps x's type; other text is text."""
    try:
        if isinstance(value, str):
            if "{{" not in value and "{%" not in value:
                return value
            if value.startswith("{{") and value.endswith("}}") and value.count("{{") == 1:
                result = _compiled(True, value).render(variables)
                if isinstance(result, jinja2.Undefined):
                    result._fail_with_undefined_error()
                return result
            return _compiled(False, value).render(variables)
        if isinstance(value, dict):
            return {k: render(v, variables) for k, v in value.items()}
        if isinstance(value, list):
            return [render(v, variables) for v in value]
    except jinja2.UndefinedError as exc:
        raise TaskError(f"undefined variable: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise TaskError(f"template error in {value!r}: {exc}") from None
    return value


def resolve_vars(merged: dict[str, Any]) -> dict[str, Any]:
    """Variables whose values are templates, rendered against the others (as Ansible's
    lazy templating does: a role default of "{{ provision9p_shares }}" is a list).

    A value that cannot be rendered stays as written; it fails where it is used.
    """
    out = dict(merged)
    pending = [k for k, v in out.items() if templated(v)]
    for _ in range(8):
        still = []
        for key in pending:
            try:
                out[key] = render(out[key], out)
            except TaskError:
                still.append(key)
                continue
            if templated(out[key]):
                still.append(key)
        if not still or still == pending:
            break
        pending = still
    return out


def condition(expr: Any, variables: dict[str, Any]) -> bool:
    if isinstance(expr, bool):
        return expr
    try:
        return bool(_native.compile_expression(str(expr))(**variables))
    except jinja2.UndefinedError as exc:
        raise TaskError(f"undefined variable in {expr!r}: {exc.message}") from None


def template_renderer(variables: dict[str, Any]) -> Callable[[str], str]:
    def render_text(text: str) -> str:
        try:
            return _files.from_string(text).render(variables)
        except jinja2.TemplateError as exc:
            raise TaskError(f"template: {exc}") from None
    return render_text
