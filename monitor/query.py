"""The watch-rule query language (SPEC section 4): syntax tree, parser and printer.

Pure: no I/O. `parse` turns a query into a tree of frozen nodes or raises `QueryError` with a
1-based column; it raises nothing else for any input string. `format_query` prints a tree
back as canonical text that parses to an equal tree. Matching lives in `rules.py`.

Grammar, loosest first (operators are uppercase only; `and`, `or`, `not`, `near` are words):

    query   := and ("OR" and)*
    and     := near (["AND"] near)*           juxtaposition means AND
    near    := unary ("NEAR/" n unary)*       left-associative
    unary   := ("NOT" | "-" | FIELD ":") unary | atom
    atom    := word | word"*" | "phrase" | /regex/ | "(" query ")"
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import regex

from monitor.analyze import tokenize
from monitor.errors import QueryError

FIELDS = ("title", "text", "author", "category", "feed", "url")
DEFAULT_FIELDS = ("title", "text")
REGEX_FLAGS = regex.IGNORECASE | regex.V0
_MAX_DEPTH = 64  # deeper nesting is surely a mistake, and would exhaust Python's stack
_MAX_NEAR_DIGITS = 6


@dataclass(frozen=True)
class Word:
    """A bare word: matches inflections (stemmed)."""

    text: str


@dataclass(frozen=True)
class Prefix:
    """`text*`: any word starting with `text` (folded, not stemmed)."""

    text: str


@dataclass(frozen=True)
class Phrase:
    """A quoted phrase: these exact words (still case- and accent-insensitive), in order."""

    text: str


@dataclass(frozen=True)
class Regex:
    """`/pattern/`, case-insensitive, over a field's plain text."""

    pattern: str


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Near:
    left: Node
    right: Node
    distance: int


@dataclass(frozen=True)
class Field:
    """`name:child`: `child` is searched in that field only."""

    name: str
    child: Node


Node = Word | Prefix | Phrase | Regex | Not | And | Or | Near | Field


# --- lexer ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tok:
    kind: str  # WORD PREFIX PHRASE REGEX AND OR NOT MINUS NEAR FIELD ( ) END
    value: str
    column: int
    number: int = 0


_OPERATORS = frozenset({"AND", "OR", "NOT"})
_RUN_ENDS = frozenset('()"')


def _fail(message: str, query: str, index: int) -> NoReturn:
    raise QueryError(message, query=query, column=index + 1)


def _lex(query: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    i, n = 0, len(query)
    while i < n:
        char = query[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(_Tok(char, char, i + 1))
            i += 1
        elif char == '"':
            close = query.find('"', i + 1)
            if close < 0:
                _fail("unclosed quote", query, i)
            text = query[i + 1 : close]
            if not tokenize(text):
                _fail("the quoted phrase has no letters or digits to match", query, i)
            tokens.append(_Tok("PHRASE", text, i + 1))
            i = close + 1
        elif char == "-":
            if i + 1 >= n or query[i + 1].isspace() or query[i + 1] == ")":
                _fail("'-' needs a term right after it", query, i)
            tokens.append(_Tok("MINUS", "-", i + 1))
            i += 1
        elif char == "/":
            i = _lex_regex(query, i, tokens)
        else:
            i = _lex_run(query, i, tokens)
    tokens.append(_Tok("END", "", n + 1))
    return tokens


def _lex_regex(query: str, i: int, tokens: list[_Tok]) -> int:
    j = i + 1
    while j < len(query) and query[j] != "/":
        j += 2 if query[j] == "\\" else 1
    if j >= len(query):
        _fail("unclosed regular expression (no closing '/')", query, i)
    pattern = query[i + 1 : j]
    if not pattern:
        _fail("empty regular expression", query, i)
    try:
        regex.compile(pattern, REGEX_FLAGS)
    # regex.error, OverflowError (huge repeat counts), RecursionError: all mean "invalid".
    except Exception as exc:  # noqa: BLE001
        offset = getattr(exc, "pos", None)
        column = i + 1 + offset if isinstance(offset, int) and 0 <= offset < len(pattern) else i
        message = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        _fail(f"invalid regular expression: {message}", query, column)
    tokens.append(_Tok("REGEX", pattern, i + 1))
    return j + 1


def _lex_run(query: str, i: int, tokens: list[_Tok]) -> int:
    j = i
    while j < len(query) and not query[j].isspace() and query[j] not in _RUN_ENDS:
        j += 1
    run = query[i:j]
    head, colon, _ = run.partition(":")
    if colon and head.lower() in FIELDS:
        after = query[i + len(head) + 1 : i + len(head) + 2]
        if not after or after.isspace() or after == ")":
            _fail(f"the field prefix '{head}:' has nothing after it", query, i)
        tokens.append(_Tok("FIELD", head.lower(), i + 1))
        return i + len(head) + 1  # the rest is lexed as a fresh term (may be -x, /re/, "..")
    if colon and _ and (close := difflib.get_close_matches(head.lower(), FIELDS, n=1, cutoff=0.7)):
        # `titel:truce` would otherwise be a word that never occurs: a silent dead rule.
        _fail(f"unknown field '{head}:' (did you mean '{close[0]}:'?); fields are "
              f"{', '.join(f + ':' for f in FIELDS)}; quote the term to search for a colon",
              query, i)
    if run in _OPERATORS:
        tokens.append(_Tok(run, run, i + 1))
    elif run == "NEAR" or run.startswith("NEAR/"):
        digits = run[5:]
        if not digits.isascii() or not digits.isdigit():
            _fail("NEAR needs a distance in words, like NEAR/5", query, i)
        if len(digits) > _MAX_NEAR_DIGITS:
            _fail("the NEAR distance is too large", query, i)
        tokens.append(_Tok("NEAR", run, i + 1, int(digits)))
    elif "*" in run:
        body = run[:-1]
        if not run.endswith("*") or "*" in body:
            _fail("'*' is only allowed at the end of a word", query, i + run.index("*"))
        words = [t for t in tokenize(body) if not t.joined]
        if len(words) != 1 or words[0].start != 0 or words[0].end != len(body):
            _fail("a prefix search needs one word before the '*'", query, i)
        tokens.append(_Tok("PREFIX", body, i + 1))
    elif not tokenize(run):
        _fail(f"'{run}' has no letters or digits to match", query, i)
    else:
        tokens.append(_Tok("WORD", run, i + 1))
    return j


# --- parser --------------------------------------------------------------------------------


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _lex(query)
        self.index = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.tokens[self.index]

    def take(self) -> _Tok:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, message: str, token: _Tok) -> NoReturn:
        raise QueryError(message, query=self.query, column=token.column)

    def parse(self) -> Node:
        if self.peek().kind == "END":
            raise QueryError("the query is empty", query=self.query, column=1)
        node = self.parse_or()
        token = self.peek()
        if token.kind == ")":
            self.fail("unmatched closing parenthesis", token)
        return node

    def parse_or(self) -> Node:
        children = [self.parse_and()]
        while self.peek().kind == "OR":
            operator = self.take()
            children.append(self.operand(operator, self.parse_and))
        return children[0] if len(children) == 1 else Or(tuple(children))

    def parse_and(self) -> Node:
        children = [self.parse_near()]
        while True:
            token = self.peek()
            if token.kind == "AND":
                self.take()
                children.append(self.operand(token, self.parse_near))
            elif token.kind not in ("OR", ")", "END", "NEAR"):
                children.append(self.parse_near())  # juxtaposition
            else:
                break
        return children[0] if len(children) == 1 else And(tuple(children))

    def parse_near(self) -> Node:
        node = self.parse_unary()
        while self.peek().kind == "NEAR":
            operator = self.take()
            right = self.operand(operator, self.parse_unary)
            if _negative(node) or _negative(right):
                # NOT binds tighter, so "NOT a NEAR/5 b" would be (NOT a) NEAR b: no positions.
                self.fail("NEAR needs words on both sides; write NOT (a NEAR/5 b)", operator)
            node = Near(node, right, operator.number)
        return node

    def operand(self, operator: _Tok, parse: Callable[[], Node]) -> Node:
        if self.peek().kind in ("AND", "OR", "NEAR", ")", "END"):
            name = f"{operator.value}:" if operator.kind == "FIELD" else operator.value
            self.fail(f"{name} is missing the term after it", operator)
        return parse()

    def parse_unary(self) -> Node:
        token = self.peek()
        if token.kind in ("AND", "OR", "NEAR"):
            self.fail(f"{token.value} is missing the term before it", token)
        if token.kind not in ("NOT", "MINUS", "FIELD"):
            return self.parse_atom()
        self.take()
        self.enter(token)
        child = self.operand(token, self.parse_unary)
        self.depth -= 1
        return Field(token.value, child) if token.kind == "FIELD" else Not(child)

    def parse_atom(self) -> Node:
        token = self.take()
        if token.kind == "WORD":
            return Word(token.value)
        if token.kind == "PREFIX":
            return Prefix(token.value)
        if token.kind == "PHRASE":
            return Phrase(token.value)
        if token.kind == "REGEX":
            return Regex(token.value)
        if token.kind == "(":
            if self.peek().kind == ")":
                self.fail("empty parentheses", token)
            self.enter(token)
            node = self.parse_or()
            self.depth -= 1
            if self.peek().kind != ")":
                self.fail("unclosed parenthesis", token)
            self.take()
            return node
        if token.kind == ")":
            self.fail("unmatched closing parenthesis", token)
        self.fail("the query ends where a term was expected", token)  # pragma: no cover

    def enter(self, token: _Tok) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            self.fail(f"the query nests more than {_MAX_DEPTH} levels deep", token)


def _negative(node: Node) -> bool:
    while isinstance(node, Field):
        node = node.child
    return isinstance(node, Not)


def parse(query: str) -> Node:
    """Parse a watch-rule query; raises QueryError (with a 1-based column) if it is invalid."""
    return _Parser(query).parse()


# --- printer -------------------------------------------------------------------------------


def format_query(node: Node) -> str:
    """Canonical text for `node`: explicit AND, NOT for `-`, minimal parentheses."""
    if isinstance(node, Word):
        return node.text
    if isinstance(node, Prefix):
        return node.text + "*"
    if isinstance(node, Phrase):
        return f'"{node.text}"'
    if isinstance(node, Regex):
        return f"/{node.pattern}/"
    if isinstance(node, Not):
        return "NOT " + _wrap(node.child, (And, Or, Near))
    if isinstance(node, Field):
        return f"{node.name}:" + _wrap(node.child, (And, Or, Near, Not))
    if isinstance(node, And):
        return " AND ".join(_wrap(child, (And, Or)) for child in node.children)
    if isinstance(node, Or):
        return " OR ".join(_wrap(child, (Or,)) for child in node.children)
    left = _wrap(node.left, (And, Or))
    right = _wrap(node.right, (And, Or, Near))
    return f"{left} NEAR/{node.distance} {right}"


def _wrap(node: Node, needs_parentheses: tuple[type, ...]) -> str:
    text = format_query(node)
    return f"({text})" if isinstance(node, needs_parentheses) else text
