"""Jinja2 as Ansible uses it: argument templating that keeps a lone expression's type,
variables that are templates of other variables, conditions, and template files."""

from __future__ import annotations

import ast
import datetime
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jinja2
import jinja2.lexer
import jinja2.nodes
from jinja2.nativetypes import NativeCodeGenerator, NativeEnvironment, NativeTemplate

from provision9p.errors import TaskError
from provision9p.tasks.filters import FILTERS, TESTS, UNSUPPORTED
from provision9p.tasks.lookups import JINJA_GLOBALS


class Undefined(jinja2.StrictUndefined):
    """Strict, but `a.b.c is defined` is false rather than an error when `a` is missing,
    as in Ansible: attribute and item access on an undefined value stay undefined (and
    keep the first missing name for the error message)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> Any:
        return self


def _native_concat(values: Iterable[Any]) -> Any:
    """A template that outputs one value keeps it as is ('{{ x }}', '{% if a %}{{ x }}{%
    endif %}'); unlike Jinja's native mode, text that looks like a literal ('22', '[1]', a
    to_json result) stays text, as in Ansible 2.19. Anything more is text."""
    head = list(itertools.islice(values, 2))
    if not head:
        return ""
    if len(head) == 1:
        return _lists(head[0])
    return "".join(str(_finalize(v)) for v in itertools.chain(head, values))


def _lists(value: Any) -> Any:
    """Tuples (zip, product, subelements, dict items) come out as lists, as in Ansible.
    Values without tuples (nearly all) are returned as they are, uncopied."""
    return _untuple(value) if _has_tuple(value) else value


def _has_tuple(value: Any) -> bool:
    kind = type(value)
    if kind is tuple:
        return True
    if kind is list:
        return any(type(v) in _CONTAINERS and _has_tuple(v) for v in value)
    if kind is dict:
        return any(type(v) in _CONTAINERS and _has_tuple(v) for v in value.values())
    return False


def _untuple(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_untuple(v) for v in value]
    if isinstance(value, dict):
        return {k: _untuple(v) for k, v in value.items()}
    return value


_CONTAINERS = (list, tuple, dict)


class _RawStringLexer(jinja2.lexer.Lexer):
    """Backslashes in string literals are kept as written, as Ansible does for the
    templates in task arguments and conditions: `regex_replace('(a)', '\\1')` in YAML
    means what the same text means outside the braces, not a second escape level."""

    def wrap(self, stream: Iterable[tuple[int, str, str]], name: str | None = None,
             filename: str | None = None) -> Iterator[jinja2.lexer.Token]:
        raw = ((lineno, token, value.replace("\\", "\\\\") if token == "string" else value)
               for lineno, token, value in stream)
        return super().wrap(raw, name, filename)


class _ArgsEnvironment(jinja2.Environment):
    @functools.cached_property
    def lexer(self) -> jinja2.lexer.Lexer:
        return _RawStringLexer(self)


class _NativeCodeGenerator(NativeCodeGenerator):
    def _output_const_repr(self, group: Iterable[Any]) -> str:
        # A constant lone expression ('{{ 22 }}', "{{ 'a' | to_json }}") keeps its type
        # too; Jinja's own joins it to text here and re-parses it later.
        values = list(group)
        if len(values) == 1:
            return repr(values[0])
        return repr("".join(str(_finalize(v)) for v in values))


class _Native(_ArgsEnvironment, NativeEnvironment):
    code_generator_class = _NativeCodeGenerator
    concat = staticmethod(_native_concat)


class _NativeTemplate(NativeTemplate):
    environment_class = _Native


_Native.template_class = _NativeTemplate


def _finalize(value: Any) -> Any:
    """What an expression in text prints: nothing for None, lists for tuples (Ansible 2.19)."""
    return "" if value is None else _lists(value)


# Ansible templates every argument with trim_blocks on, like its template files.
_native = _Native(undefined=Undefined, trim_blocks=True)
# Conditions: Ansible evaluates them without its backslash rule, so '\\d' in a `when` is
# Jinja's own escape (as it was when conditions were `{% if %}` templates).
_conditions = NativeEnvironment(undefined=Undefined)
# The template module's Jinja2 settings in Ansible: a block tag eats its newline, leading
# blanks before a tag stay (lstrip_blocks is off), string literals unescape backslashes
# as Jinja does. Trailing newlines: see _trailing_newlines.
_files = jinja2.Environment(undefined=Undefined, trim_blocks=True, finalize=_finalize)


def _trailing_newlines(source: str, result: str) -> str:
    """Ansible renders without keep_trailing_newline, then gives back the newlines the
    source ended with that the result lacks (so `{% endif %}\n` at the end of a file
    keeps its newline even though trim_blocks ate it)."""
    missing = (len(source) - len(source.rstrip("\n"))) - (len(result) - len(result.rstrip("\n")))
    return result + "\n" * missing if missing > 0 else result


def _now(utc: bool = False, fmt: str | None = None) -> Any:
    """Ansible's `now()`: the controller's time, formatted when fmt is given."""
    when = (datetime.datetime.now(datetime.UTC).replace(tzinfo=None) if utc
            else datetime.datetime.now())
    return when.strftime(fmt) if fmt else when


def _undef(hint: str | None = None) -> Undefined:
    """Ansible's `undef()`: a value that fails with hint when used (role defaults that
    must be overridden)."""
    return Undefined(hint=hint)


for _env in (_native, _files, _conditions):
    _env.filters.update(FILTERS)
    _env.tests.update(TESTS)
    _env.globals.update(now=_now, undef=_undef)
    _env.globals.update(JINJA_GLOBALS)  # lookup(), query(), q()
    # Jinja's own filters and tests under Ansible's qualified names too.
    _env.filters.update({f"ansible.builtin.{k}": v for k, v in list(_env.filters.items())
                         if "." not in k})
    _env.tests.update({f"ansible.builtin.{k}": v for k, v in list(_env.tests.items())
                       if "." not in k})


@functools.lru_cache(maxsize=4096)
def _compiled(source: str) -> jinja2.Template:
    return _native.from_string(source)


@functools.lru_cache(maxsize=4096)
def check_template(source: str) -> None:
    """Load-time check of a template: syntax, unknown filters and tests, and what
    provision9p refuses (jinja2.TemplateSyntaxError, with the reason). Walks the parsed
    tree rather than compiling: a tenth of the cost, for every templated argument."""
    tree = _native.parse(source)
    for kind, table, nodes in (("filter", _native.filters, tree.find_all(jinja2.nodes.Filter)),
                               ("test", _native.tests, tree.find_all(jinja2.nodes.Test))):
        for node in nodes:
            name = node.name.removeprefix("ansible.builtin.").removeprefix("community.general.")
            if name in UNSUPPORTED:
                raise jinja2.TemplateSyntaxError(UNSUPPORTED[name], node.lineno)
            if node.name not in table:
                raise jinja2.TemplateSyntaxError(
                    f"not supported by provision9p: the {kind} {node.name!r} (ansible-core's "
                    f"{kind}s are; collections' are not)", node.lineno)


def templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(templated(v) for v in value.values())
    if isinstance(value, list):
        return any(templated(v) for v in value)
    return False


def render(value: Any, variables: dict[str, Any]) -> Any:
    """Templating as Ansible does it: '{{ x }}' alone keeps x's type; other text is text.
    Arguments use Ansible's rules (see _RawStringLexer, _native_concat)."""
    try:
        if isinstance(value, str):
            if "{{" not in value and "{%" not in value:
                return value
            result = _compiled(value).render(variables)
            if isinstance(result, jinja2.Undefined):
                result._fail_with_undefined_error()
            return _trailing_newlines(value, result) if isinstance(result, str) else result
        if isinstance(value, dict):
            return {k: render(v, variables) for k, v in value.items()}
        if isinstance(value, list):
            return [render(v, variables) for v in value]
    except jinja2.UndefinedError as exc:
        raise TaskError(f"undefined variable: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise TaskError(f"template error in {value!r}: {exc}") from None
    except TaskError:
        raise
    except Exception as exc:  # a filter's own failure: bad input, not our crash
        raise TaskError(f"template error in {value!r}: {type(exc).__name__}: {exc}") from None
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
    """A `when`: a Jinja expression judged by Python truthiness (Ansible before 2.19, and
    2.19 with ALLOW_BROKEN_CONDITIONALS; plain 2.19 refuses non-boolean results). A
    condition written as '{{ x }}' is rendered first and its text judged as an expression,
    as Ansible does: `when: "{{ flag }}"` with flag 'false' is false."""
    if isinstance(expr, bool):
        return expr
    if not isinstance(expr, str):
        return bool(expr)
    try:
        text = expr.strip()
        if templated(text):
            rendered = render(text, variables)
            if not isinstance(rendered, str):
                return bool(rendered)
            text = rendered.strip()
        return bool(_expression(text)(**variables))
    except jinja2.UndefinedError as exc:
        raise TaskError(f"undefined variable in {expr!r}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise TaskError(f"condition {expr!r}: {exc}") from None
    except TaskError:
        raise
    except Exception as exc:
        raise TaskError(f"condition {expr!r}: {type(exc).__name__}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _expression(text: str) -> Callable[..., Any]:
    return _conditions.compile_expression(text, undefined_to_none=False)


_HEADER_OPTIONS = {"trim_blocks", "lstrip_blocks", "keep_trailing_newline", "newline_sequence",
                   "block_start_string", "block_end_string", "variable_start_string",
                   "variable_end_string", "comment_start_string", "comment_end_string",
                   "line_statement_prefix", "line_comment_prefix"}


def _file_environment(text: str) -> tuple[jinja2.Environment, str]:
    """A template file's first line may set Jinja options, as Ansible's template module
    reads it: `#jinja2: trim_blocks: False, lstrip_blocks: True` (the line is dropped)."""
    if not text.startswith("#jinja2:"):
        return _files, text
    header, newline, rest = text.partition("\n")
    if not newline:
        raise TaskError("template: a #jinja2: line needs the template on the next lines")
    options: dict[str, Any] = {}
    for pair in header[len("#jinja2:"):].split(","):
        key, sep, raw = pair.partition(":")
        key = key.strip()
        if not sep or key not in _HEADER_OPTIONS:
            raise TaskError(f"template: unknown #jinja2: option {pair.strip()!r}",
                            hint="known: " + ", ".join(sorted(_HEADER_OPTIONS)))
        try:
            options[key] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            raise TaskError(f"template: bad value in #jinja2: {pair.strip()!r}") from None
    return _files.overlay(**options), rest


def template_renderer(variables: dict[str, Any]) -> Callable[[str], str]:
    def render_text(text: str) -> str:
        try:
            env, body = _file_environment(text)
            return _trailing_newlines(text, env.from_string(body).render(variables))
        except jinja2.TemplateError as exc:
            raise TaskError(f"template: {exc}") from None
        except TaskError:
            raise
        except Exception as exc:
            raise TaskError(f"template: {type(exc).__name__}: {exc}") from None
    return render_text
