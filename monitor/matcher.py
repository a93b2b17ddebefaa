"""Compiled query nodes: evaluate one parsed query on one analysed article.

Pure: no I/O. `compile_query` turns a `query.Node` tree into matchers; each matcher's
`eval(ctx)` returns the positive occurrences it found (possibly none, for NOT), or None
when it does not match. `triggers` and `required` describe which words a match needs, for
the candidate index in `rules.py`. Behaviour worth knowing is listed in rules.py's docstring.
"""

from __future__ import annotations

import bisect

import regex

from monitor.analyze import FieldIndex, Mode, fold, stem, tokenize
from monitor.query import (
    DEFAULT_FIELDS,
    REGEX_FLAGS,
    And,
    Field,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Regex,
    Word,
)

REGEX_TIMEOUT_SECONDS = 0.05  # per field and term; a daemon must not hang on one pattern

# An occurrence: (field, first position, last position, start offset, end offset, term label).
Occ = tuple[str, int, int, int, int, str]
Key = tuple[bool, str]  # (is a stem?, folded word or stem)


class Context:
    """One article's fields, analysed for one language mode."""

    def __init__(self, fields: dict[str, FieldIndex], mode: Mode) -> None:
        self.fields, self.mode = fields, mode
        self.stems = {name: field.stems(mode) for name, field in fields.items()}
        self._tables = (
            [field.by_word for field in fields.values()],  # [False]: folded words
            list(self.stems.values()),  # [True]: stems
        )

    def has_all(self, keys: tuple[Key, ...]) -> bool:
        """Whether every (stemmed?, word) key occurs in some field."""
        for stemmed, word in keys:
            for table in self._tables[stemmed]:
                if word in table:
                    break
            else:
                return False
        return True


class Matcher:
    """A compiled query node; the field prefixes are already resolved into its leaves."""

    def eval(self, ctx: Context) -> list[Occ] | None:
        """The positive occurrences if the node matches (possibly none, for NOT), else None."""
        raise NotImplementedError

    def triggers(self, mode: Mode) -> set[Key] | None:
        """Keys of which at least one must occur for a match; None: can match without any."""
        raise NotImplementedError

    def required(self, mode: Mode) -> frozenset[Key]:
        """Keys that must all occur for a match (a cheap check before evaluating)."""
        return frozenset()


class _Words(Matcher):
    """A bare word (stemmed) or a quoted phrase (exact words), maybe several tokens long."""

    def __init__(self, text: str, label: str, fields: tuple[str, ...], stemmed: bool) -> None:
        self.text, self.label, self.fields, self.stemmed = text, label, fields, stemmed
        self._sequences: dict[Mode, list[tuple[str, ...]]] = {}

    def sequences(self, mode: Mode) -> list[tuple[str, ...]]:
        """Stems (or folded words) to find in a row: the parts, and with hyphen compounds
        or elisions replaced by their joined or cut form."""
        found = self._sequences.get(mode)
        if found is None:
            tokens = tokenize(self.text)

            def key(word: str) -> str:
                return stem(word, mode) if self.stemmed else fold(word)

            found = [tuple(key(t.word) for t in tokens if not t.joined)]
            covered = {p for t in tokens if t.joined for p in range(t.first, t.last + 1)}
            if covered:
                merged = sorted(
                    (t.first, key(t.word)) for t in tokens if t.joined or t.first not in covered
                )
                found.append(tuple(k for _, k in merged))
            self._sequences[mode] = found
        return found

    def triggers(self, mode: Mode) -> set[Key]:
        return {(self.stemmed, max(words, key=len)) for words in self.sequences(mode)}

    def required(self, mode: Mode) -> frozenset[Key]:
        options = [frozenset((self.stemmed, w) for w in words) for words in self.sequences(mode)]
        return frozenset.intersection(*options)

    def eval(self, ctx: Context) -> list[Occ] | None:
        occs: list[Occ] = []
        label = self.label
        sequences = self._sequences.get(ctx.mode) or self.sequences(ctx.mode)
        for name in self.fields:
            table = ctx.stems[name] if self.stemmed else ctx.fields[name].by_word
            tokens = ctx.fields[name].tokens
            for words in sequences:
                found = table.get(words[0])
                if found is None:
                    continue
                following: list[list[int]] = []
                for word in words[1:]:
                    more = table.get(word)
                    if more is None:
                        break
                    following.append(more)
                else:
                    for index in found:
                        ends = [index]
                        for more in following:  # each next word starts right after the last
                            ends = [
                                n for c in ends for n in more if tokens[n][2] == tokens[c][3] + 1
                            ]
                        begin = tokens[index]
                        for last in ends:
                            end = tokens[last]
                            occs.append((name, begin[2], end[3], begin[0], end[1], label))
        return occs or None


class _Prefix(Matcher):
    def __init__(self, text: str, fields: tuple[str, ...]) -> None:
        self.prefix, self.label, self.fields = fold(text), text + "*", fields

    def triggers(self, mode: Mode) -> set[Key]:
        return {(False, "*" + self.prefix)}  # '*': looked up in the prefix table

    def eval(self, ctx: Context) -> list[Occ] | None:
        occs: list[Occ] = []
        for name in self.fields:
            field = ctx.fields[name]
            for word, indexes in field.by_word.items():
                if word.startswith(self.prefix):
                    for index in indexes:
                        token = field.tokens[index]
                        occs.append((name, token[2], token[3], token[0], token[1], self.label))
        return occs or None


class _Regex(Matcher):
    def __init__(self, pattern: str, fields: tuple[str, ...]) -> None:
        self.compiled = regex.compile(pattern, REGEX_FLAGS)
        self.label, self.fields = f"/{pattern}/", fields

    def triggers(self, mode: Mode) -> None:
        return None

    def eval(self, ctx: Context) -> list[Occ] | None:
        occs: list[Occ] = []
        for name in self.fields:
            field = ctx.fields[name]
            for match in self._search(field.text):
                start, end = match
                first, last = field.positions(start, end)
                occs.append((name, first, last, start, end, self.label))
            for tag, base in field.extra:
                if self._search(tag):
                    occs.append((name, base, base, 0, 0, self.label))
        return occs or None

    def _search(self, text: str) -> list[tuple[int, int]]:
        try:
            return [
                m.span()
                for m in self.compiled.finditer(text, timeout=REGEX_TIMEOUT_SECONDS)
                if m.end() > m.start()
            ]
        except TimeoutError:
            return []


class _Not(Matcher):
    def __init__(self, child: Matcher) -> None:
        self.child = child

    def triggers(self, mode: Mode) -> None:
        return None

    def eval(self, ctx: Context) -> list[Occ] | None:
        return [] if self.child.eval(ctx) is None else None


class _And(Matcher):
    def __init__(self, children: list[Matcher]) -> None:
        self.children = children

    def triggers(self, mode: Mode) -> set[Key] | None:
        return _narrowest([child.triggers(mode) for child in self.children])

    def required(self, mode: Mode) -> frozenset[Key]:
        return frozenset().union(*(child.required(mode) for child in self.children))

    def eval(self, ctx: Context) -> list[Occ] | None:
        occs: list[Occ] = []
        for child in self.children:
            found = child.eval(ctx)
            if found is None:
                return None
            occs.extend(found)
        return occs


class _Or(Matcher):
    def __init__(self, children: list[Matcher]) -> None:
        self.children = children

    def triggers(self, mode: Mode) -> set[Key] | None:
        keys: set[Key] = set()
        for child in self.children:
            found = child.triggers(mode)
            if found is None:
                return None
            keys |= found
        return keys

    def required(self, mode: Mode) -> frozenset[Key]:
        return frozenset.intersection(*(child.required(mode) for child in self.children))

    def eval(self, ctx: Context) -> list[Occ] | None:
        results = [child.eval(ctx) for child in self.children]  # all, for the hits
        matched = [occ for found in results if found is not None for occ in found]
        return matched if any(found is not None for found in results) else None


class _Near(Matcher):
    def __init__(self, left: Matcher, right: Matcher, distance: int) -> None:
        self.left, self.right, self.distance = left, right, distance

    def triggers(self, mode: Mode) -> set[Key] | None:
        return _narrowest([self.left.triggers(mode), self.right.triggers(mode)])

    def required(self, mode: Mode) -> frozenset[Key]:
        return self.left.required(mode) | self.right.required(mode)

    def eval(self, ctx: Context) -> list[Occ] | None:
        lefts = self.left.eval(ctx)
        if not lefts:
            return None
        rights = self.right.eval(ctx)
        if not rights:
            return None
        if len(lefts) * len(rights) > 256:
            return self._sorted(lefts, rights)
        distance = self.distance
        kept_left: list[Occ] = []
        kept_right: set[int] = set()
        for a in lefts:  # few pairs (the usual case): compare them all
            close = False
            for i, b in enumerate(rights):
                if a[0] == b[0] and a[1] - b[2] <= distance and b[1] - a[2] <= distance:
                    close = True
                    kept_right.add(i)
            if close:
                kept_left.append(a)
        if not kept_left:
            return None
        return kept_left + [rights[i] for i in sorted(kept_right)]

    def _sorted(self, lefts: list[Occ], rights: list[Occ]) -> list[Occ] | None:
        """Many pairs: bisect into the right-hand occurrences sorted by field and position."""
        rights.sort(key=lambda o: (o[0], o[1]))
        right_keys = [(o[0], o[1]) for o in rights]
        longest = max(o[2] - o[1] for o in rights)
        kept_left: list[Occ] = []
        kept_right: set[int] = set()
        for occ in lefts:
            field, first, last = occ[0], occ[1], occ[2]
            low = bisect.bisect_left(right_keys, (field, first - self.distance - longest))
            high = bisect.bisect_right(right_keys, (field, last + self.distance))
            close = [
                i for i in range(low, high)
                if max(first - rights[i][2], rights[i][1] - last, 0) <= self.distance
            ]  # fmt: skip
            if close:
                kept_left.append(occ)
                kept_right.update(close)
        if not kept_left:
            return None
        return kept_left + [rights[i] for i in sorted(kept_right)]


def _narrowest(options: list[set[Key] | None]) -> set[Key] | None:
    """For an AND: any one operand's keys will do; prefer few, long (likely rare) keys."""
    known = [keys for keys in options if keys is not None]
    if not known:
        return None
    return min(known, key=lambda keys: (len(keys), -min(len(k[1]) for k in keys)))


def compile_query(node: Node, fields: tuple[str, ...]) -> Matcher:
    if isinstance(node, Word):
        return _Words(node.text, node.text, fields, stemmed=True)
    if isinstance(node, Phrase):
        return _Words(node.text, f'"{node.text}"', fields, stemmed=False)
    if isinstance(node, Prefix):
        return _Prefix(node.text, fields)
    if isinstance(node, Regex):
        return _Regex(node.pattern, fields)
    if isinstance(node, Field):
        return compile_query(node.child, (node.name,))
    if isinstance(node, Not):
        return _Not(compile_query(node.child, fields))
    if isinstance(node, And):
        return _And([compile_query(child, fields) for child in node.children])
    if isinstance(node, Or):
        return _Or([compile_query(child, fields) for child in node.children])
    return _Near(compile_query(node.left, fields), compile_query(node.right, fields), node.distance)


def fields_of(node: Node, fields: tuple[str, ...] = DEFAULT_FIELDS) -> set[str]:
    if isinstance(node, Field):
        return fields_of(node.child, (node.name,))
    if isinstance(node, (Not,)):
        return fields_of(node.child, fields)
    if isinstance(node, (And, Or)):
        return set().union(*(fields_of(child, fields) for child in node.children))
    if isinstance(node, Near):
        return fields_of(node.left, fields) | fields_of(node.right, fields)
    return set(fields)
