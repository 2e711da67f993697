"""Row expressions of an aggregation spec: inputs (``~col("approved")``) and filters
(``col("amount") > 100``), written once and compiled to both engines.

    col("amount") * 100          col("approved") == False          (col("a") > 1) & ~col("b")

An expression is a small tree (column, literal, operator) that serialises to JSON (it is stored in
the feature view's tags) and compiles to a Spark column (batch) and to a pyarrow compute expression
(the stream path). Only what both engines evaluate identically is offered: comparisons, boolean
logic, + - * / and ``is_null``. A comparison with a null is null, and a null filter drops the row,
in both engines (SQL's three-valued logic).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_BINARY = {"==", "!=", "<", "<=", ">", ">=", "&", "|", "+", "-", "*", "/"}
_UNARY = {"~", "is_null"}


@dataclass(frozen=True)
class Expr:
    op: str  # "col", "lit", a binary operator or a unary one
    args: tuple = ()

    # -- building -----------------------------------------------------------------------------
    def _bin(self, op: str, other: Any, swap: bool = False) -> Expr:
        other = other if isinstance(other, Expr) else lit(other)
        return Expr(op, (other, self) if swap else (self, other))

    def __eq__(self, other):  # type: ignore[override]
        return self._bin("==", other)

    def __ne__(self, other):  # type: ignore[override]
        return self._bin("!=", other)

    def __lt__(self, other):
        return self._bin("<", other)

    def __le__(self, other):
        return self._bin("<=", other)

    def __gt__(self, other):
        return self._bin(">", other)

    def __ge__(self, other):
        return self._bin(">=", other)

    def __and__(self, other):
        return self._bin("&", other)

    def __or__(self, other):
        return self._bin("|", other)

    def __add__(self, other):
        return self._bin("+", other)

    def __radd__(self, other):
        return self._bin("+", other, swap=True)

    def __sub__(self, other):
        return self._bin("-", other)

    def __rsub__(self, other):
        return self._bin("-", other, swap=True)

    def __mul__(self, other):
        return self._bin("*", other)

    def __rmul__(self, other):
        return self._bin("*", other, swap=True)

    def __truediv__(self, other):
        return self._bin("/", other)

    def __invert__(self):
        return Expr("~", (self,))

    def is_null(self) -> Expr:
        return Expr("is_null", (self,))

    def __hash__(self):
        return hash(self.to_json())

    def __bool__(self):
        raise TypeError("use & | ~ to combine expressions, not and/or/not")

    # -- introspection --------------------------------------------------------------------------
    def columns(self) -> set[str]:
        if self.op == "col":
            return {self.args[0]}
        if self.op == "lit":
            return set()
        return set().union(*(a.columns() for a in self.args))

    def __repr__(self) -> str:
        if self.op == "col":
            return f"col({self.args[0]!r})"
        if self.op == "lit":
            return repr(self.args[0])
        if self.op == "~":
            return f"~{self.args[0]!r}"
        if self.op == "is_null":
            return f"{self.args[0]!r}.is_null()"
        return f"({self.args[0]!r} {self.op} {self.args[1]!r})"

    # -- serialisation ----------------------------------------------------------------------------
    def to_obj(self) -> Any:
        if self.op in ("col", "lit"):
            return {self.op: self.args[0]}
        return {"op": self.op, "args": [a.to_obj() for a in self.args]}

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), sort_keys=True)

    @staticmethod
    def from_obj(obj: Any) -> Expr:
        if "col" in obj:
            return col(obj["col"])
        if "lit" in obj:
            return lit(obj["lit"])
        op = obj["op"]
        if op not in _BINARY | _UNARY:
            raise ValueError(f"unknown expression operator {op!r}")
        return Expr(op, tuple(Expr.from_obj(a) for a in obj["args"]))

    # -- compilation --------------------------------------------------------------------------------
    def to_spark(self):
        """A pyspark Column."""
        from pyspark.sql import functions as F

        if self.op == "col":
            return F.col(f"`{self.args[0]}`")
        if self.op == "lit":
            return F.lit(self.args[0])
        if self.op == "~":
            return ~self.args[0].to_spark()
        if self.op == "is_null":
            return self.args[0].to_spark().isNull()
        a, b = (x.to_spark() for x in self.args)
        if self.op == "/":
            return a.cast("double") / b.cast("double")
        return {
            "==": a.__eq__,
            "!=": a.__ne__,
            "<": a.__lt__,
            "<=": a.__le__,
            ">": a.__gt__,
            ">=": a.__ge__,
            "&": a.__and__,
            "|": a.__or__,
            "+": a.__add__,
            "-": a.__sub__,
            "*": a.__mul__,
        }[self.op](b)

    def to_arrow(self):
        """A pyarrow.compute Expression (evaluate with ``table.filter`` / ``dataset``-style projection)."""
        import pyarrow.compute as pc

        if self.op == "col":
            return pc.field(self.args[0])
        if self.op == "lit":
            return pc.scalar(self.args[0])
        if self.op == "~":
            return pc.invert(self.args[0].to_arrow())
        if self.op == "is_null":
            return pc.is_null(self.args[0].to_arrow())
        a, b = (x.to_arrow() for x in self.args)
        fn = {
            "==": "equal",
            "!=": "not_equal",
            "<": "less",
            "<=": "less_equal",
            ">": "greater",
            ">=": "greater_equal",
            "&": "and_kleene",
            "|": "or_kleene",
            "+": "add_checked",
            "-": "subtract_checked",
            "*": "multiply_checked",
            "/": "divide",
        }[self.op]
        if self.op == "/":
            a, b = a.cast("float64"), b.cast("float64")
        return pc.Expression._call(fn, [a, b])


def col(name: str) -> Expr:
    """A column of the raw events."""
    if not isinstance(name, str) or not name:
        raise ValueError("col() takes a column name")
    return Expr("col", (name,))


def lit(value: Any) -> Expr:
    """A constant (number, string or bool)."""
    if value is not None and not isinstance(value, bool | int | float | str):
        raise ValueError(f"literal {value!r}: only numbers, strings and booleans")
    return Expr("lit", (value,))
