"""A small, safe expression language for strategy rules.

Parsed once into an AST (never ``eval``'d); one AST serves two backends: numpy
evaluation (aio.strategy.evaluate) and Pine v6 printing (aio.pine). Grammar::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | cmp
    cmp     := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum     := prod (("+" | "-") prod)*
    prod    := unary (("*" | "/") unary)*
    unary   := "-" unary | postfix
    postfix := atom ("[" INT "]")*          # x[1]: the value one bar ago
    atom    := NUMBER | "true" | "false" | NAME ("." NAME)? | NAME "(" args? ")" | "(" expr ")"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from aio.errors import AioError


class RuleSyntaxError(AioError):
    """A rule that does not parse; the message points at the column of the bad token."""

    def __init__(self, source: str, col: int, message: str) -> None:
        self.source, self.col, self.reason = source, col, message
        pointer = " " * col + "^"
        super().__init__(f"{message} at column {col + 1}:\n  {source}\n  {pointer}")


# name -> (min args, max args). The same set exists in both backends.
FUNCTIONS: dict[str, tuple[int, int]] = {
    "crossover": (2, 2),
    "crossunder": (2, 2),
    "cross": (2, 2),
    "abs": (1, 1),
    "min": (2, 2),
    "max": (2, 2),
    "highest": (2, 2),
    "lowest": (2, 2),
    "rising": (2, 2),
    "falling": (2, 2),
    "na": (1, 1),
    "nz": (1, 2),
}


@dataclass(frozen=True)
class Num:
    value: float
    col: int = 0


@dataclass(frozen=True)
class Bool:
    value: bool
    col: int = 0


@dataclass(frozen=True)
class Name:
    name: str
    attr: str | None = None
    col: int = 0

    @property
    def key(self) -> str:
        return f"{self.name}.{self.attr}" if self.attr else self.name


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple["Node", ...]
    col: int = 0


@dataclass(frozen=True)
class Unary:
    op: str  # "-" | "not"
    operand: "Node"
    col: int = 0


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / < <= > >= == != and or
    left: "Node"
    right: "Node"
    col: int = 0


@dataclass(frozen=True)
class History:
    operand: "Node"
    offset: int
    col: int = 0


Node = Union[Num, Bool, Name, Call, Unary, Binary, History]

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.\d*|\.\d+|\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|==|!=|[-+*/<>()\[\],.]))"
)
_KEYWORDS = {"and", "or", "not", "true", "false"}


@dataclass
class _Tok:
    kind: str  # num | name | op | kw | end
    text: str
    col: int


def tokenize(source: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        m = _TOKEN.match(source, pos)
        if not m or m.end() == pos:
            col = pos + (len(source[pos:]) - len(source[pos:].lstrip()))
            raise RuleSyntaxError(source, col, f"unexpected character {source[col]!r}")
        kind = m.lastgroup or "op"
        text = m.group(kind)
        col = m.start(kind)
        if kind == "name" and text in _KEYWORDS:
            kind = "kw"
        toks.append(_Tok(kind, text, col))
        pos = m.end()
    toks.append(_Tok("end", "", len(source)))
    return toks


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.toks = tokenize(source)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> _Tok:
        tok = self.next()
        if tok.text != text:
            found = repr(tok.text) if tok.kind != "end" else "end of rule"
            raise RuleSyntaxError(self.source, tok.col, f"expected {text!r} but found {found}")
        return tok

    def fail(self, tok: _Tok, what: str) -> RuleSyntaxError:
        found = repr(tok.text) if tok.kind != "end" else "end of rule"
        return RuleSyntaxError(self.source, tok.col, f"{what}, found {found}")

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise RuleSyntaxError(self.source, 0, "empty rule")
        node = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise self.fail(tok, "expected an operator or the end of the rule")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.peek().text == "or":
            tok = self.next()
            node = Binary("or", node, self.and_(), tok.col)
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.peek().text == "and":
            tok = self.next()
            node = Binary("and", node, self.not_(), tok.col)
        return node

    def not_(self) -> Node:
        if self.peek().text == "not":
            tok = self.next()
            return Unary("not", self.not_(), tok.col)
        return self.cmp()

    def cmp(self) -> Node:
        node = self.sum()
        if self.peek().text in ("<", "<=", ">", ">=", "==", "!="):
            tok = self.next()
            node = Binary(tok.text, node, self.sum(), tok.col)
            if self.peek().text in ("<", "<=", ">", ">=", "==", "!="):
                raise self.fail(self.peek(), "chained comparisons are not allowed; use 'and'")
        return node

    def sum(self) -> Node:
        node = self.prod()
        while self.peek().text in ("+", "-"):
            tok = self.next()
            node = Binary(tok.text, node, self.prod(), tok.col)
        return node

    def prod(self) -> Node:
        node = self.unary()
        while self.peek().text in ("*", "/"):
            tok = self.next()
            node = Binary(tok.text, node, self.unary(), tok.col)
        return node

    def unary(self) -> Node:
        if self.peek().text == "-":
            tok = self.next()
            inner = self.unary()
            if isinstance(inner, Num):
                return Num(-inner.value, tok.col)
            return Unary("-", inner, tok.col)
        return self.postfix()

    def postfix(self) -> Node:
        node = self.atom()
        while self.peek().text == "[":
            lb = self.next()
            tok = self.next()
            if tok.kind != "num" or not tok.text.isdigit():
                raise RuleSyntaxError(self.source, tok.col, "history offset must be a non-negative integer like x[1]")
            self.expect("]")
            node = History(node, int(tok.text), lb.col)
        return node

    def atom(self) -> Node:
        tok = self.next()
        if tok.kind == "num":
            return Num(float(tok.text), tok.col)
        if tok.kind == "kw" and tok.text in ("true", "false"):
            return Bool(tok.text == "true", tok.col)
        if tok.text == "(":
            node = self.or_()
            self.expect(")")
            return node
        if tok.kind == "name":
            if self.peek().text == "(":
                return self.call(tok)
            if self.peek().text == ".":
                self.next()
                attr = self.next()
                if attr.kind != "name":
                    raise self.fail(attr, "expected a field name after '.'")
                return Name(tok.text, attr.text, tok.col)
            return Name(tok.text, None, tok.col)
        raise self.fail(tok, "expected a number, a name, a function call or '('")

    def call(self, name: _Tok) -> Node:
        if name.text not in FUNCTIONS:
            import difflib

            close = difflib.get_close_matches(name.text, list(FUNCTIONS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RuleSyntaxError(
                self.source, name.col,
                f"unknown function {name.text!r}{hint}; functions are: {', '.join(sorted(FUNCTIONS))}",
            )
        self.expect("(")
        args: list[Node] = []
        if self.peek().text != ")":
            args.append(self.or_())
            while self.peek().text == ",":
                self.next()
                args.append(self.or_())
        self.expect(")")
        lo, hi = FUNCTIONS[name.text]
        if not lo <= len(args) <= hi:
            n = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise RuleSyntaxError(self.source, name.col, f"{name.text}() takes {n} arguments, got {len(args)}")
        return Call(name.text, tuple(args), name.col)


def parse(source: str) -> Node:
    """Parse one rule expression; raises :class:`RuleSyntaxError` with the column."""
    if not isinstance(source, str):
        raise RuleSyntaxError(str(source), 0, f"a rule must be a string, got {type(source).__name__}")
    return _Parser(source).parse()


def names(node: Node) -> set[str]:
    """Every series/parameter name a node refers to (``bb.upper`` as ``bb.upper``)."""
    out: set[str] = set()

    def walk(n: Node) -> None:
        if isinstance(n, Name):
            out.add(n.key)
        elif isinstance(n, Call):
            for a in n.args:
                walk(a)
        elif isinstance(n, Unary):
            walk(n.operand)
        elif isinstance(n, Binary):
            walk(n.left)
            walk(n.right)
        elif isinstance(n, History):
            walk(n.operand)

    walk(node)
    return out
