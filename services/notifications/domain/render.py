"""Rendering templates: Jinja2 in its sandbox, pure (no I/O), strict about undefined variables.

- Email subject and text, SMS bodies: no escaping. Email HTML: every placeholder is
  HTML-escaped (autoescape). Webhook bodies: every placeholder renders as a JSON value
  (``{"name": {{ contact.first_name }}}`` gives ``{"name": "Ada"}``), and the result must be
  JSON.
- A variable the data lacks is an error naming it (``contact.first_name``), never an empty
  string; so is anything else a template does wrong at render time (dividing by zero, an output
  over ``MAX_OUTPUT``). Every such failure is a ``RenderFailure``, so callers never crash on a
  template.
- Syntax is checked when a template is saved (``syntax_errors``): the field and the line.
- Money: amounts are integers in minor units (as orders keeps them); ``{{ item.total |
  money(cart.currency) }}`` writes one in the message's locale ("12,50 €" in fr, "€12.50" in
  en), with the currency's own number of decimals (JPY none).

- Work is bounded too: ranges (100,000 items), repetition and output size by the sandbox, and
  every ``{% for %}`` counts its iterations against one budget per field (``MAX_ITERATIONS``),
  so nested loops fail as a RenderFailure instead of holding a worker for minutes.
"""

from __future__ import annotations

import contextvars
import functools
import json
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    Undefined,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing
from markupsafe import Markup

from services.notifications.domain import money

MAX_OUTPUT = 1_000_000  # characters one field may render to
MAX_EXPONENT = 100
MAX_ITERATIONS = 1_000_000  # loop iterations one field may run, all loops together
TEXT, HTML, JSON = "text", "html", "json"  # how placeholders are written out


class TemplateProblem(Exception):
    """A problem in one field of a variant, at a line when it is known."""

    def __init__(self, part: str, line: int | None, message: str) -> None:
        self.part, self.line, self.message = part, line, message
        at = f" line {line}" if line else ""
        super().__init__(f"{part}{at}: {message}")


class RenderFailure(TemplateProblem):
    """The template could not be rendered with this data."""


class _Strict(StrictUndefined):
    """A missing variable names itself, with its path when it is inside the data."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        if self._undefined_obj is missing:
            return f"undefined variable '{self._undefined_name}'"
        return str(super()._undefined_message)


class _Obj(dict[str, Any]):
    """An object of the data, knowing its path ("contact", "cart.items[0]")."""

    path: str


class _Seq(list[Any]):
    path: str


def _wrap(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        obj = _Obj((str(k), _wrap(v, f"{path}.{k}" if path else str(k))) for k, v in value.items())
        obj.path = path
        return obj
    if isinstance(value, list | tuple):
        seq = _Seq(_wrap(v, f"{path}[{i}]") for i, v in enumerate(value))
        seq.path = path
        return seq
    return value


_iterations_left: contextvars.ContextVar[list[int]] = contextvars.ContextVar("iterations")
_COUNTED = "__crm_counted__"  # the global every loop's iterable goes through


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    left = _iterations_left.get()
    for item in iterable:
        left[0] -= 1
        if left[0] < 0:
            raise SecurityError(f"more than {MAX_ITERATIONS} loop iterations")
        yield item


class _Env(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals[_COUNTED] = _counted
        self.filters["money"] = money.money

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """The parsed template with every loop's iterable wrapped in ``_counted``."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(
                nodes.Name(_COUNTED, "load", lineno=loop.lineno),
                [loop.iter],
                [],
                None,
                None,
                lineno=loop.lineno,
            )
        return tree

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, _Obj):  # the data's keys first: cart.items is the key, not dict.items
            if attribute in obj:
                return obj[attribute]
            found = super().getattr(obj, attribute)
            if isinstance(found, Undefined):
                return self.undefined(
                    hint=f"undefined variable '{obj.path}.{attribute}'", obj=obj, name=attribute
                )
            return found
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        found = super().getitem(obj, argument)
        if isinstance(found, Undefined) and isinstance(obj, _Obj | _Seq):
            return self.undefined(
                hint=f"undefined variable '{obj.path}[{argument!r}]'", obj=obj, name=str(argument)
            )
        return found

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent over {MAX_EXPONENT}")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(n, int)
                if sized and len(seq) * n > MAX_OUTPUT:
                    raise SecurityError(f"a repetition over {MAX_OUTPUT} items")
        return super().call_binop(context, operator, left, right)


def _json_value(value: Any) -> Any:
    if isinstance(value, Undefined):
        str(value)  # raises, naming the variable
    if isinstance(value, Markup):  # already JSON (|tojson)
        return value
    return json.dumps(value, ensure_ascii=False)


_ENVS = {
    TEXT: _Env(undefined=_Strict, autoescape=False, keep_trailing_newline=True),
    HTML: _Env(undefined=_Strict, autoescape=True, keep_trailing_newline=True),
    JSON: _Env(undefined=_Strict, autoescape=False, finalize=_json_value),
}


def kind_of(channel_part: tuple[str, str]) -> str:
    """How a (channel, field)'s placeholders are written out."""
    channel, part = channel_part
    if part == "html":
        return HTML
    return JSON if channel == "CHANNEL_WEBHOOK" else TEXT


@functools.lru_cache(maxsize=256)  # compiled templates (sources up to 200k characters)
def _compiled(kind: str, source: str) -> Template:
    return _ENVS[kind].from_string(source)


def compile_part(kind: str, part: str, source: str) -> Template:
    """The compiled template; TemplateProblem (with the line) when its syntax is wrong."""
    try:
        return _compiled(kind, source)
    except TemplateSyntaxError as err:
        raise TemplateProblem(part, err.lineno, err.message or "syntax error") from None
    except RecursionError:
        raise TemplateProblem(part, None, "nested too deeply") from None


def _line(err: BaseException) -> int | None:
    """The template line an error was raised at (Jinja rewrites tracebacks to show it)."""
    line = None
    for frame, lineno in traceback.walk_tb(err.__traceback__):
        if frame.f_code.co_filename == "<template>":
            line = lineno
    return line


def render_part(
    kind: str, part: str, source: str, variables: Mapping[str, Any], locale: str = ""
) -> str:
    """One field rendered with ``variables`` (JSON-like data) for ``locale`` (how money is
    written); RenderFailure otherwise."""
    template = compile_part(kind, part, source)
    out: list[str] = []
    size = 0
    budget = _iterations_left.set([MAX_ITERATIONS])
    speaking = money.LOCALE.set(locale)
    try:
        chunks: Iterator[str] = template.generate(_wrap(variables, ""))
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise RenderFailure(part, None, f"renders to more than {MAX_OUTPUT} characters")
            out.append(chunk)
    except RenderFailure:
        raise
    except Exception as err:  # the template's own doing (sandboxed): never the caller's crash
        message = str(err) or type(err).__name__
        raise RenderFailure(part, _line(err), message[:300]) from None
    finally:
        _iterations_left.reset(budget)
        money.LOCALE.reset(speaking)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Problem:
    part: str
    line: int | None
    message: str


def syntax_errors(channel: str, parts: Mapping[str, str]) -> list[Problem]:
    """The syntax errors of a variant's fields (``parts``: field -> template text)."""
    found = []
    for part, source in parts.items():
        try:
            compile_part(kind_of((channel, part)), part, source)
        except TemplateProblem as p:
            found.append(Problem(p.part, p.line, p.message))
    return found


def names_read(source: str) -> set[str]:
    """The top-level variables a template reads (``contact``, ``metrics``, ``data``...)."""
    return set(_names_read(source))


# Every decision asks both questions of the same few sources: parsing them each time cost a
# quarter of the serve role's CPU under SendMessage load, so the answers are kept (like
# _compiled's templates; they depend on the source alone).
@functools.lru_cache(maxsize=256)
def _names_read(source: str) -> frozenset[str]:
    try:
        return frozenset(meta.find_undeclared_variables(_ENVS[TEXT].parse(source)))
    except TemplateSyntaxError:
        return frozenset()


def fields_read(source: str, name: str) -> set[str] | None:
    """The fields of the variable ``name`` a template reads (``contact.first_name``,
    ``contact['email']`` → first_name, email); None when it uses ``name`` as a whole (prints it,
    loops over it, hands it to a filter), so every field must be there."""
    found = _fields_read(source, name)
    return None if found is None else set(found)


@functools.lru_cache(maxsize=256)
def _fields_read(source: str, name: str) -> frozenset[str] | None:
    try:
        tree = _ENVS[TEXT].parse(source)
    except TemplateSyntaxError:
        return frozenset()
    uses = [n for n in tree.find_all(nodes.Name) if n.name == name]
    fields: set[str] = set()
    accessed = 0
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        inner = getattr(node, "node", None)
        if not (isinstance(inner, nodes.Name) and inner.name == name):
            continue
        if isinstance(node, nodes.Getattr):
            fields.add(node.attr)
        elif isinstance(node, nodes.Getitem) and _text_const(node.arg):
            fields.add(node.arg.value)  # type: ignore[attr-defined]
        else:
            return None  # contact[some_expression]: any field
        accessed += 1
    return frozenset(fields) if accessed == len(uses) else None


def _text_const(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Const) and isinstance(node.value, str)
