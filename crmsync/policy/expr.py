"""The condition language: a lark grammar, name and type checks, and compilation to SQL.

A condition is parsed once when the policy loads, checked against the names its context knows (a bad name or
a type mismatch is reported with its column), and compiled to one SQL boolean expression over the columns of
the grading stage table. Nothing is ever evaluated in Python.

Grammar, loosest binding first::

    a or b   a and b   not a
    x = y   x != y   x <> y   x < y   x <= y   x > y   x >= y
    x in (1, 2)   x not in ('a', 'b')   x between 1 and 5   x is null   x is not null
    x + y   x - y   x * y   x / y   x % y   -x   (x)
    numbers 12, 12.5; strings 'Gold' or "Gold" (a quote inside doubled or after a backslash); true, false, null
    functions: days_since(d) days_until(d) date('2024-12-31') end_of_day(d) today() year(d) month(d) day(d)
               attr('key') attr_num('key') attr_date('key') coalesce(a, b) min(a, b) max(a, b) abs(x) round(x)
"""

from __future__ import annotations

import difflib
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

GRAMMAR = r"""
?start: expr
?expr: and_expr | expr _OR and_expr -> or_
?and_expr: not_expr | and_expr _AND not_expr -> and_
?not_expr: _NOT not_expr -> not_ | predicate
?predicate: sum
    | sum COMP sum -> compare
    | sum _IN "(" sum ("," sum)* ")" -> in_
    | sum _NOT _IN "(" sum ("," sum)* ")" -> not_in
    | sum _IS _NULL -> is_null
    | sum _IS _NOT _NULL -> is_not_null
    | sum _BETWEEN sum _AND sum -> between
?sum: product | sum ADDOP product -> binop
?product: unary | product MULOP unary -> binop
?unary: atom | NEG unary -> neg
?atom: NUMBER -> number
    | STRING -> string
    | _TRUE -> true
    | _FALSE -> false
    | _NULL -> null
    | NAME "(" [sum ("," sum)*] ")" -> call
    | NAME -> var
    | "(" expr ")"
COMP: ">=" | "<=" | "==" | "!=" | "<>" | "=" | ">" | "<"
ADDOP: "+" | "-"
MULOP: "*" | "/" | "%"
NEG: "-"
_OR.2: /or\b/i
_AND.2: /and\b/i
_NOT.2: /not\b/i
_IN.2: /in\b/i
_IS.2: /is\b/i
_NULL.2: /null\b/i
_TRUE.2: /true\b/i
_FALSE.2: /false\b/i
_BETWEEN.2: /between\b/i
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /[0-9]+(\.[0-9]+)?/
STRING: /'([^'\\]|\\.|'')*'/ | /"([^"\\]|\\.|"")*"/
%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)
_KEYWORDS = {"or", "and", "not", "in", "is", "null", "true", "false", "between"}

NUM, STR, DATE, BOOL, NULL = "number", "text", "date", "true/false", "null"
AS_OF_COLUMN = "_as_of"
ATTRIBUTES_COLUMN = "_attributes"


MAX_DIGITS = 18
"""Most digits a number literal may have before, and after, the decimal point."""
MAX_DEPTH = 100
"""Deepest nesting of operators, parentheses and calls a condition may have."""
MAX_LENGTH = 20_000
"""Longest condition text, in characters."""


class ExprError(ValueError):
    """A problem in one condition; ``column`` is 1-based."""

    def __init__(self, message: str, column: int | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.message} at column {self.column}" if self.column else self.message
        return f"{text} ({self.hint})" if self.hint else text


@dataclass(frozen=True)
class Var:
    """A name a condition may use: its type and the SQL that reads it from the stage table."""

    name: str
    type: str
    sql: str


def parse(text: str) -> Tree:
    """Parse a condition; raise :class:`ExprError` pointing at the first bad token."""
    if not text or not text.strip():
        raise ExprError("empty condition")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"condition is {len(text)} characters long (at most {MAX_LENGTH})")
    try:
        tree = _PARSER.parse(text)
    except UnexpectedEOF:
        raise ExprError("condition ends too early", len(text) + 1) from None
    except UnexpectedCharacters as exc:
        raise _bad_character(text[exc.pos_in_stream], exc.column) from None
    except UnexpectedToken as exc:
        tok = exc.token
        if tok.type == "$END":
            raise ExprError("condition ends too early", len(text) + 1) from None
        raise ExprError(f"unexpected {str(tok)!r}", tok.column) from None
    except UnexpectedInput as exc:  # pragma: no cover - other lark input errors
        raise ExprError("cannot parse condition", getattr(exc, "column", None)) from None
    _check_depth(tree)
    for tok in _name_tokens(tree):
        if tok.lower() in _KEYWORDS:
            raise ExprError(f"misplaced keyword '{tok}'", tok.column)
    return tree


def _bad_character(char: str, column: int) -> ExprError:
    if unicodedata.category(char) == "Nd":  # a digit of another script (Arabic-Indic, full-width...)
        return ExprError(f"unexpected character {char!r}", column, "write numbers with the digits 0-9")
    return ExprError(f"unexpected character {char!r}", column)


def _check_depth(tree: Tree) -> None:
    """Refuse a condition nested deeper than :data:`MAX_DEPTH` (without recursing: the tree may be very deep)."""
    stack: list[tuple[Tree, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExprError(
                f"condition nests more than {MAX_DEPTH} levels deep",
                _col(node),
                "split it into simpler conditions, or use 'in (...)' for a list of values",
            )
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


def _name_tokens(tree: Tree) -> Iterator[Token]:
    for sub in tree.iter_subtrees_topdown():
        if sub.data in ("var", "call"):
            yield sub.children[0]


def names(tree: Tree) -> Iterator[Token]:
    """Every variable token (not function names) in a parsed condition."""
    for sub in tree.iter_subtrees_topdown():
        if sub.data == "var":
            yield sub.children[0]


def calls(tree: Tree) -> set[str]:
    """The names of the functions a parsed condition calls (lower case)."""
    return {str(sub.children[0]).lower() for sub in tree.iter_subtrees_topdown() if sub.data == "call"}


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _unquote(token: str) -> str:
    quote, body = token[0], token[1:-1]
    return re.sub(r"\\(.)", r"\1", body.replace(quote * 2, quote))


def _col(tree: Tree | Token) -> int | None:
    if isinstance(tree, Token):
        return tree.column
    meta = getattr(tree, "meta", None)
    return None if meta is None or meta.empty else meta.column


Resolver = Callable[[str], Var | None]


class Compiler:
    """Type-checks a parsed condition against known names and emits SQL."""

    def __init__(self, scope: Mapping[str, Var], suggestions: list[str] | None = None) -> None:
        self.scope = scope
        self.suggestions = suggestions if suggestions is not None else sorted(scope)
        self.used: dict[str, Var] = {}
        self.parts: list[tuple[str, int | None]] = []
        """The SQL of every sub-expression compiled, innermost first, with its column (to locate a failure)."""

    def condition(self, tree: Tree) -> str:
        """The SQL of a condition; it is tried on one row of nulls, so what the database refuses fails here."""
        self.used, self.parts = {}, []
        sql, typ = self.expr(tree)
        if typ != BOOL:
            raise ExprError(f"a condition must be true or false, this is a {typ} (compare it, e.g. '>= 100')", 1)
        sql = f"coalesce({sql}, false)"
        probe(sql, self.used.values(), self.parts)
        return sql

    def expr(self, node: Tree | Token) -> tuple[str, str]:
        if isinstance(node, Token):  # pragma: no cover - grammar always wraps tokens
            raise ExprError(f"unexpected {node!s}", node.column)
        handler = getattr(self, f"_{node.data}", None)
        if handler is None:  # pragma: no cover
            raise ExprError(f"unsupported construct {node.data}", _col(node))
        sql, typ = handler(node)
        self.parts.append((sql, _col(node)))
        return sql, typ

    # --- atoms -----------------------------------------------------------------------------------------
    def _number(self, n: Tree) -> tuple[str, str]:
        text = str(n.children[0])
        whole, _, fraction = text.partition(".")
        if len(whole.lstrip("0")) > MAX_DIGITS or len(fraction) > MAX_DIGITS:
            # the database cannot compare such a literal with a metric; say so here, not in the middle of a run
            raise ExprError(f"number {text[:12]}... has too many digits (at most {MAX_DIGITS} each side)", _col(n))
        return text, NUM

    def _string(self, n: Tree) -> tuple[str, str]:
        return sql_string(_unquote(str(n.children[0]))), STR

    def _true(self, n: Tree) -> tuple[str, str]:
        return "true", BOOL

    def _false(self, n: Tree) -> tuple[str, str]:
        return "false", BOOL

    def _null(self, n: Tree) -> tuple[str, str]:
        return "NULL", NULL

    def _var(self, n: Tree) -> tuple[str, str]:
        tok = n.children[0]
        name = str(tok)
        var = self.scope.get(name)
        if var is None:
            refusal = getattr(self.scope, "refusal", None)
            reason = refusal(name) if refusal else None
            if reason:
                raise ExprError(reason, tok.column)
            raise ExprError(*unknown_name(name, self.suggestions, tok.column))
        self.used[name] = var
        return var.sql, var.type

    # --- operators -------------------------------------------------------------------------------------
    def _bool_operands(self, n: Tree) -> list[str]:
        out = []
        for child in n.children:
            sql, typ = self.expr(child)
            if typ not in (BOOL, NULL):
                raise ExprError(f"'and'/'or'/'not' need true/false operands, got a {typ}", _col(child))
            out.append(sql)
        return out

    def _or_(self, n: Tree) -> tuple[str, str]:
        a, b = self._bool_operands(n)
        return f"({a} OR {b})", BOOL

    def _and_(self, n: Tree) -> tuple[str, str]:
        a, b = self._bool_operands(n)
        return f"({a} AND {b})", BOOL

    def _not_(self, n: Tree) -> tuple[str, str]:
        (a,) = self._bool_operands(n)
        return f"(NOT {a})", BOOL

    def _same(self, items: list[Tree], what: str) -> tuple[list[str], str]:
        sqls, types = [], []
        for item in items:
            s, t = self.expr(item)
            sqls.append(s)
            types.append(t)
        known = {t for t in types if t != NULL}
        if len(known) > 1:
            first = types[0] if types[0] != NULL else next(iter(known))
            bad = next(i for i, t in enumerate(types) if t not in (first, NULL))
            raise ExprError(f"cannot {what} a {first} with a {types[bad]}", _col(items[bad]))
        return sqls, (known.pop() if known else NULL)

    def _compare(self, n: Tree) -> tuple[str, str]:
        left, op, right = n.children
        (a, b), typ = self._same([left, right], "compare")
        if typ == BOOL and op not in ("=", "==", "!=", "<>"):
            raise ExprError("true/false values can only be compared with = or !=", op.column)
        sql_op = {"==": "=", "!=": "<>"}.get(str(op), str(op))
        return f"({a} {sql_op} {b})", BOOL

    def _in_(self, n: Tree) -> tuple[str, str]:
        (first, *rest), _ = self._same(list(n.children), "compare")
        return f"({first} IN ({', '.join(rest)}))", BOOL

    def _not_in(self, n: Tree) -> tuple[str, str]:
        (first, *rest), _ = self._same(list(n.children), "compare")
        return f"({first} NOT IN ({', '.join(rest)}))", BOOL

    def _is_null(self, n: Tree) -> tuple[str, str]:
        a, _ = self.expr(n.children[0])
        return f"({a} IS NULL)", BOOL

    def _is_not_null(self, n: Tree) -> tuple[str, str]:
        a, _ = self.expr(n.children[0])
        return f"({a} IS NOT NULL)", BOOL

    def _between(self, n: Tree) -> tuple[str, str]:
        (a, lo, hi), typ = self._same(list(n.children), "compare")
        if typ == BOOL:
            raise ExprError("'between' needs numbers, dates or text", _col(n))
        return f"({a} BETWEEN {lo} AND {hi})", BOOL

    def _numeric(self, node: Tree) -> str:
        sql, typ = self.expr(node)
        if typ not in (NUM, NULL):
            raise ExprError(f"arithmetic needs numbers, got a {typ}", _col(node))
        return sql

    def _binop(self, n: Tree) -> tuple[str, str]:
        left, op, right = n.children
        a, b = self._numeric(left), self._numeric(right)
        if op in ("/", "%"):
            return f"({a} {op} NULLIF({b}, 0))", NUM
        return f"({a} {op} {b})", NUM

    def _neg(self, n: Tree) -> tuple[str, str]:
        return f"(- {self._numeric(n.children[-1])})", NUM

    # --- functions -------------------------------------------------------------------------------------
    def _call(self, n: Tree) -> tuple[str, str]:
        tok, *args = n.children
        name = str(tok).lower()
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise ExprError(*unknown_name(str(tok), sorted(FUNCTIONS), tok.column, kind="function"))
        arity, fn = spec
        if len(args) != arity:
            raise ExprError(f"{name}() takes {arity} argument{'s' * (arity != 1)}, got {len(args)}", tok.column)
        return fn(self, args, tok)


def _literal_key(c: Compiler, args: list[Tree], tok: Token) -> str:
    (arg,) = args
    if not isinstance(arg, Tree) or arg.data != "string":
        raise ExprError(f"{tok}() takes a quoted name, e.g. {tok}('region')", _col(arg))
    return json_pointer(_unquote(str(arg.children[0])))


def json_pointer(key: str) -> str:
    """The SQL string of the JSON pointer naming the attribute ``key`` exactly (``attr('key')`` reads it)."""
    # a JSON pointer names any key exactly: only '~' and '/' are escaped (a JSON path would need quoting)
    return sql_string("/" + key.replace("~", "~0").replace("/", "~1"))


def _date_arg(c: Compiler, arg: Tree, fname: str) -> str:
    sql, typ = c.expr(arg)
    if typ not in (DATE, NULL):
        raise ExprError(f"{fname}() needs a date, got a {typ}", _col(arg))
    return sql if typ == DATE else f"CAST({sql} AS TIMESTAMPTZ)"


def _date_literal(c: Compiler, args: list[Tree], tok: Token) -> tuple[str, str]:
    """The start of a day in the policy's time zone (the grading's session zone)."""
    (arg,) = args
    text = _unquote(str(arg.children[0])) if isinstance(arg, Tree) and arg.data == "string" else None
    try:
        day = date.fromisoformat(text or "")
    except ValueError:
        raise ExprError("date() takes a quoted day like '2024-12-31'", _col(arg)) from None
    return f"CAST(DATE '{day.isoformat()}' AS TIMESTAMPTZ)", DATE


def _days(c: Compiler, args: list[Tree], tok: Token, sign: int) -> tuple[str, str]:
    d = _date_arg(c, args[0], str(tok))
    a, b = (AS_OF_COLUMN, d) if sign > 0 else (d, AS_OF_COLUMN)
    return f"floor((epoch({a}) - epoch({b})) / 86400)", NUM


def _end_of_day(c: Compiler, args: list[Tree], tok: Token) -> tuple[str, str]:
    """The last instant of the day a date falls on, in the policy's time zone (the grading's session zone)."""
    d = _date_arg(c, args[0], str(tok))
    return f"(CAST(CAST({d} AS DATE) + 1 AS TIMESTAMPTZ) - INTERVAL 1 MICROSECOND)", DATE


def _part(part: str) -> Callable[[Compiler, list[Tree], Token], tuple[str, str]]:
    return lambda c, args, tok: (f"extract({part} FROM {_date_arg(c, args[0], str(tok))})", NUM)


def _pair(sql_fn: str) -> Callable[[Compiler, list[Tree], Token], tuple[str, str]]:
    def build(c: Compiler, args: list[Tree], tok: Token) -> tuple[str, str]:
        (a, b), typ = c._same(args, "combine")
        return f"{sql_fn}({a}, {b})", typ

    return build


FUNCTIONS: dict[str, tuple[int, Callable[[Compiler, list[Tree], Token], tuple[str, str]]]] = {
    "days_since": (1, lambda c, a, t: _days(c, a, t, 1)),
    "days_until": (1, lambda c, a, t: _days(c, a, t, -1)),
    "date": (1, _date_literal),
    "end_of_day": (1, _end_of_day),
    "today": (0, lambda c, a, t: (AS_OF_COLUMN, DATE)),
    "year": (1, _part("year")),
    "month": (1, _part("month")),
    "day": (1, _part("day")),
    "attr": (1, lambda c, a, t: (f"json_extract_string({ATTRIBUTES_COLUMN}, {_literal_key(c, a, t)})", STR)),
    "attr_num": (
        1,
        lambda c, a, t: (f"TRY_CAST(json_extract_string({ATTRIBUTES_COLUMN}, {_literal_key(c, a, t)}) AS DOUBLE)", NUM),
    ),
    "attr_date": (
        1,
        lambda c, a, t: (
            f"TRY_CAST(json_extract_string({ATTRIBUTES_COLUMN}, {_literal_key(c, a, t)}) AS TIMESTAMPTZ)",
            DATE,
        ),
    ),
    "coalesce": (2, _pair("coalesce")),
    "min": (2, _pair("least")),
    "max": (2, _pair("greatest")),
    "abs": (1, lambda c, a, t: (f"abs({c._numeric(a[0])})", NUM)),
    "round": (1, lambda c, a, t: (f"round({c._numeric(a[0])})", NUM)),
}


def unknown_name(
    name: str, known: list[str], column: int | None, kind: str = "metric"
) -> tuple[str, int | None, str | None]:
    """Arguments of the :class:`ExprError` for an unknown name, with a 'did you mean' hint when one is close."""
    if name.lower() in _KEYWORDS:
        return f"misplaced keyword '{name}'", column, None
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"unknown {kind} '{name}'", column, (f"did you mean {close[0]}?" if close else None)


SQL_TYPES = {NUM: "DOUBLE", STR: "VARCHAR", DATE: "TIMESTAMPTZ", BOOL: "BOOLEAN", NULL: "VARCHAR"}
"""The column type a probe gives a variable of each type."""
MAX_PROBES = 200
"""Most sub-expressions tried one by one to find the column of a condition the database refuses."""
_IDENTIFIER = re.compile(r'^(?:"[^"]+"|[A-Za-z_][A-Za-z0-9_]*)$')
_probe_lock = threading.Lock()
_probe_con: list[object] = []


def probe(sql: str, variables: Iterable[Var], parts: Sequence[tuple[str, int | None]] = ()) -> None:
    """Evaluate ``sql`` on one row of nulls with the variables' columns, as grading will evaluate it.

    What the database refuses (a function it cannot resolve, a constant that overflows) raises
    :class:`ExprError` at the column of the innermost failing sub-expression in ``parts`` (innermost first),
    so that a policy check refuses it rather than a run failing on it. A variable whose SQL is not a plain
    column name cannot be stood in for: then nothing is tried.
    """
    variables = list(variables)
    if not all(_IDENTIFIER.match(v.sql) for v in variables):
        return
    columns = [f"CAST(NULL AS {SQL_TYPES[v.type]}) AS {v.sql}" for v in variables]
    columns += [f"TIMESTAMPTZ '2000-01-01 00:00:00+00' AS {AS_OF_COLUMN}", f"NULL::VARCHAR AS {ATTRIBUTES_COLUMN}"]
    row = "SELECT " + ", ".join(columns)
    reason = _refusal(f"SELECT {sql} FROM ({row})")
    if reason is None:
        return
    column = next(
        (col for part, col in parts[:MAX_PROBES] if _refusal(f"SELECT {part} FROM ({row})") is not None), None
    )
    raise ExprError(f"the database cannot evaluate this ({reason})", column)


def _refusal(query: str) -> str | None:
    """The first line of the database's error for ``query``, or ``None`` when it runs."""
    import duckdb

    with _probe_lock:
        if not _probe_con:
            _probe_con.append(duckdb.connect(":memory:"))
        con = _probe_con[0]
        try:
            con.execute(query).fetchall()  # type: ignore[attr-defined]
        except duckdb.Error as exc:
            if isinstance(exc, duckdb.FatalException | duckdb.InternalException):
                _probe_con.clear()  # the connection is unusable after these
            return str(exc).strip().split("\n")[0]
    return None
