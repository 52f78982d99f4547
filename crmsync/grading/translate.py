"""DuckDB SQL to Spark SQL: the policy's statements are compiled once, for DuckDB, and translated with SQLGlot.

SQLGlot translates the syntax (``SEMI JOIN``, ``FILTER (WHERE …)``, ``TIMESTAMPTZ`` literals, ``::`` casts, quoted
names). What it leaves as it is, this module rewrites on the parsed tree:

- ``CREATE OR REPLACE TEMP TABLE x AS …`` becomes ``CREATE OR REPLACE TEMPORARY VIEW x AS …``: Spark has no
  temporary tables; a view is a name for a plan, evaluated lazily where the final result is read;
- ``round_even(x, n)`` becomes ``bround(x, n)`` (both round half to even);
- ``UBIGINT`` becomes ``DECIMAL(20,0)`` (Spark has no unsigned integers);
- ``avg(x)`` of a decimal is computed as DuckDB computes it (:func:`_average`): Spark's average of a decimal is a
  decimal of 8 places, DuckDB's a double.

A statement Spark cannot run (``INSERT``, ``UPDATE``, ``DELETE``, ``ASOF`` joins) is refused with
:class:`UnsupportedStatement` rather than translated into something that means another thing.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp


class UnsupportedStatement(ValueError):
    """A statement that has no faithful translation to Spark SQL."""


def _average(avg: exp.Avg, where: exp.Expression | None) -> exp.Expression:
    """``avg(x)`` of a decimal as DuckDB computes it: with ``FILTER`` the quotient of the exact sum and the count,
    rounded once to a double (taken here from a decimal quotient of 20 places); without, the sum rounded to a double,
    divided by the count. (Spark's own average of a decimal is a decimal of 8 places.) Null over no row."""

    def filtered(agg: exp.Expression) -> exp.Expression:
        return exp.Filter(this=agg, expression=where.copy()) if where is not None else agg

    total, count = filtered(exp.Sum(this=avg.this.copy())), filtered(exp.Count(this=avg.this.copy()))
    if where is None:
        total = exp.Cast(this=total, to=exp.DataType.build("DOUBLE"))
        return exp.Anonymous(this="try_divide", expressions=[total, count])
    total = exp.Cast(this=total, to=exp.DataType.build("DECIMAL(22,4)"))
    count = exp.Cast(this=count, to=exp.DataType.build("DECIMAL(38,0)"))
    quotient = exp.Anonymous(this="try_divide", expressions=[total, count])
    return exp.Cast(this=quotient, to=exp.DataType.build("DOUBLE"))


def _rewrite(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Filter) and isinstance(node.this, exp.Avg):
        return _average(node.this, node.expression)
    if isinstance(node, exp.Avg) and not isinstance(node.parent, exp.Filter):
        return _average(node, None)
    if isinstance(node, exp.Anonymous) and str(node.this).lower() == "round_even":
        return exp.Anonymous(this="BROUND", expressions=node.expressions)
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.UBIGINT:
        return exp.DataType.build("DECIMAL(20,0)")
    return node


def to_spark(statement: str) -> str:
    """One DuckDB statement of the policy as Spark SQL.

    Raises:
        UnsupportedStatement: a statement that writes rows, or uses a construct Spark lacks.
    """
    tree = sqlglot.parse_one(statement, read="duckdb")
    if isinstance(tree, exp.Insert | exp.Update | exp.Delete):
        raise UnsupportedStatement(f"Spark SQL cannot run {type(tree).__name__.upper()} on a view: {statement[:80]}")
    for join in tree.find_all(exp.Join):
        if (join.args.get("method") or "").upper() == "ASOF":
            raise UnsupportedStatement("Spark SQL has no ASOF join")
    if isinstance(tree, exp.Create) and str(tree.args.get("kind", "")).upper() == "TABLE":
        tree.set("kind", "VIEW")
        tree.set("replace", True)
    tree = tree.transform(_rewrite)
    return tree.sql(dialect="spark")
