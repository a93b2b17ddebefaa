"""Watch rules: compile queries (see `query.py`) once, then match articles against all of them.

Pure: no I/O. The query language is documented for users in docs/rules.md.

Speed: `RuleSet.match` does not evaluate every rule per article. Each rule gets a set of
trigger keys (a word's stem, a phrase's longest word, a prefix) such that the rule cannot
match unless one of them occurs in the article; an inverted index from key to rules picks
the candidates, and only those are evaluated. Rules that can match without any word
(`NOT x` alone, regex-only) are always candidates.

Decisions worth knowing:

- `ceasefire` matches "ceasefire" and "cease-fire" (the joined form of the hyphenated word),
  but NOT the two separate words "cease fire": joining any two neighbouring words would
  make "in sight" match `insight`. Write `ceasefire OR "cease fire"` for all three.
  `"cease fire"` matches "cease fire" and "cease-fire"; the bare `cease-fire` matches all
  three ("cease fire", "cease-fire" and "ceasefire").
- `a NEAR/n b`: the distance is the difference of word positions between the nearest ends,
  so `NEAR/1` means adjacent (either order) and overlapping occurrences are 0 apart.
- Language for stemming: the rule's, else the feed's declared one, else each word's script
  (see `analyze.word_language`); the same choice is made for query and article words.
- `feed:` searches the feed's name and tags; a tag hit is reported with an empty span
  (start == end == 0) since its offsets would not point into the feed name.
- `/regex/` runs on the original field text with a time limit per field; a search that
  times out counts as no match. Empty matches are ignored.
- NEAR measures word positions, so an operand must have some: `NOT a NEAR/5 b` is a
  parse error, and an OR group that matched only through its NOT part is never near.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import regex

from monitor.analyze import FieldIndex, Mode, fold, normalize_language, stem, tokenize
from monitor.models import Article, Hit, RuleMatch
from monitor.query import (
    DEFAULT_FIELDS,
    FIELDS,
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
    format_query,
    parse,
)

__all__ = ["FeedInfo", "Node", "RuleSet", "RuleSpec", "format_query", "parse"]

REGEX_TIMEOUT_SECONDS = 0.05  # per field and term; a daemon must not hang on one pattern

# An occurrence: (field, first position, last position, start offset, end offset, term label).
Occ = tuple[str, int, int, int, int, str]
Key = tuple[bool, str]  # (is a stem?, folded word or stem)


@dataclass(frozen=True, kw_only=True)
class RuleSpec:
    name: str
    query: str
    language: str | None = None  # ISO 639-1 code like "en", "ru", "uk", "de", "fr", "el"
    exclude: str | None = None  # a query that vetoes a match


@dataclass(frozen=True, kw_only=True)
class FeedInfo:
    name: str
    tags: frozenset[str] = frozenset()
    language: str | None = None  # the feed's declared language ("en-us" style values work)


# --- one article, analysed for the duration of one match() call ----------------------------


class _Context:
    """One article's fields, analysed for one language mode."""

    def __init__(self, fields: dict[str, FieldIndex], mode: Mode) -> None:
        self.fields, self.mode = fields, mode
        self.stems = {name: field.stems(mode) for name, field in fields.items()}

    def has_all(self, keys: tuple[Key, ...]) -> bool:
        """Whether every (stemmed?, word) key occurs in some field."""
        for stemmed, word in keys:
            tables = self.stems if stemmed else {n: f.by_word for n, f in self.fields.items()}
            if not any(word in table for table in tables.values()):
                return False
        return True


def _analyse(article: Article, feed: FeedInfo, fields: frozenset[str]) -> dict[str, FieldIndex]:
    values: dict[str, Sequence[str]] = {
        "title": [article.title],
        "text": [article.text],
        "author": [article.author],
        "category": ["; ".join(article.categories)],
        "feed": [feed.name, *sorted(feed.tags)],
        "url": [article.link or ""],
    }
    return {name: FieldIndex(name, values[name]) for name in FIELDS if name in fields}


# --- compiled query nodes ------------------------------------------------------------------


class _Node:
    def eval(self, ctx: _Context) -> list[Occ] | None:
        """The positive occurrences if the node matches (possibly none, for NOT), else None."""
        raise NotImplementedError

    def triggers(self, mode: Mode) -> set[Key] | None:
        """Keys of which at least one must occur for a match; None: can match without any."""
        raise NotImplementedError

    def required(self, mode: Mode) -> frozenset[Key]:
        """Keys that must all occur for a match (a cheap check before evaluating)."""
        return frozenset()


class _Words(_Node):
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

    def eval(self, ctx: _Context) -> list[Occ] | None:
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


class _Prefix(_Node):
    def __init__(self, text: str, fields: tuple[str, ...]) -> None:
        self.prefix, self.label, self.fields = fold(text), text + "*", fields

    def triggers(self, mode: Mode) -> set[Key]:
        return {(False, "*" + self.prefix)}  # '*': looked up in the prefix table

    def eval(self, ctx: _Context) -> list[Occ] | None:
        occs: list[Occ] = []
        for name in self.fields:
            field = ctx.fields[name]
            for word, indexes in field.by_word.items():
                if word.startswith(self.prefix):
                    for index in indexes:
                        token = field.tokens[index]
                        occs.append((name, token[2], token[3], token[0], token[1], self.label))
        return occs or None


class _Regex(_Node):
    def __init__(self, pattern: str, fields: tuple[str, ...]) -> None:
        self.compiled = regex.compile(pattern, REGEX_FLAGS)
        self.label, self.fields = f"/{pattern}/", fields

    def triggers(self, mode: Mode) -> None:
        return None

    def eval(self, ctx: _Context) -> list[Occ] | None:
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


class _Not(_Node):
    def __init__(self, child: _Node) -> None:
        self.child = child

    def triggers(self, mode: Mode) -> None:
        return None

    def eval(self, ctx: _Context) -> list[Occ] | None:
        return [] if self.child.eval(ctx) is None else None


class _And(_Node):
    def __init__(self, children: list[_Node]) -> None:
        self.children = children

    def triggers(self, mode: Mode) -> set[Key] | None:
        return _narrowest([child.triggers(mode) for child in self.children])

    def required(self, mode: Mode) -> frozenset[Key]:
        return frozenset().union(*(child.required(mode) for child in self.children))

    def eval(self, ctx: _Context) -> list[Occ] | None:
        occs: list[Occ] = []
        for child in self.children:
            found = child.eval(ctx)
            if found is None:
                return None
            occs.extend(found)
        return occs


class _Or(_Node):
    def __init__(self, children: list[_Node]) -> None:
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

    def eval(self, ctx: _Context) -> list[Occ] | None:
        results = [child.eval(ctx) for child in self.children]  # all, for the hits
        matched = [occ for found in results if found is not None for occ in found]
        return matched if any(found is not None for found in results) else None


class _Near(_Node):
    def __init__(self, left: _Node, right: _Node, distance: int) -> None:
        self.left, self.right, self.distance = left, right, distance

    def triggers(self, mode: Mode) -> set[Key] | None:
        return _narrowest([self.left.triggers(mode), self.right.triggers(mode)])

    def required(self, mode: Mode) -> frozenset[Key]:
        return self.left.required(mode) | self.right.required(mode)

    def eval(self, ctx: _Context) -> list[Occ] | None:
        lefts = self.left.eval(ctx)
        if not lefts:
            return None
        rights = self.right.eval(ctx)
        if not rights:
            return None
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


def _compile(node: Node, fields: tuple[str, ...]) -> _Node:
    if isinstance(node, Word):
        return _Words(node.text, node.text, fields, stemmed=True)
    if isinstance(node, Phrase):
        return _Words(node.text, f'"{node.text}"', fields, stemmed=False)
    if isinstance(node, Prefix):
        return _Prefix(node.text, fields)
    if isinstance(node, Regex):
        return _Regex(node.pattern, fields)
    if isinstance(node, Field):
        return _compile(node.child, (node.name,))
    if isinstance(node, Not):
        return _Not(_compile(node.child, fields))
    if isinstance(node, And):
        return _And([_compile(child, fields) for child in node.children])
    if isinstance(node, Or):
        return _Or([_compile(child, fields) for child in node.children])
    return _Near(_compile(node.left, fields), _compile(node.right, fields), node.distance)


def _fields_of(node: Node, fields: tuple[str, ...] = DEFAULT_FIELDS) -> set[str]:
    if isinstance(node, Field):
        return _fields_of(node.child, (node.name,))
    if isinstance(node, (Not,)):
        return _fields_of(node.child, fields)
    if isinstance(node, (And, Or)):
        return set().union(*(_fields_of(child, fields) for child in node.children))
    if isinstance(node, Near):
        return _fields_of(node.left, fields) | _fields_of(node.right, fields)
    return set(fields)


# --- the rule set --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    name: str
    language: str | None  # normalised; None: the feed's language
    query: _Node
    exclude: _Node | None


class _TriggerIndex:
    """Key -> rules that may match when it occurs, for one language mode."""

    def __init__(self, rules: list[tuple[int, _Rule]], mode: Mode) -> None:
        self.always: list[int] = []
        self.required: dict[int, tuple[Key, ...]] = {}  # checked before evaluating, if 2+
        self.by_key: dict[Key, list[int]] = {}
        self.prefixes: dict[int, dict[str, list[int]]] = {}  # length -> prefix -> rules
        for number, rule in rules:
            required = rule.query.required(mode)
            if len(required) > 1:
                self.required[number] = tuple(sorted(required, key=lambda k: -len(k[1])))
            keys = rule.query.triggers(mode)
            if keys is None:
                self.always.append(number)
                continue
            for key in keys:
                if not key[0] and key[1].startswith("*"):
                    prefix = key[1][1:]
                    self.prefixes.setdefault(len(prefix), {}).setdefault(prefix, []).append(number)
                else:
                    self.by_key.setdefault(key, []).append(number)
        self.words = {k[1]: v for k, v in self.by_key.items() if not k[0]}
        self.stems = {k[1]: v for k, v in self.by_key.items() if k[0]}

    def candidates(self, ctx: _Context) -> set[int]:
        found = set(self.always)
        for name, field in ctx.fields.items():
            if self.words:
                _collect(found, self.words, field.by_word)
            if self.stems:
                _collect(found, self.stems, ctx.stems[name])
            for length, prefixes in self.prefixes.items():
                for word in field.by_word:
                    numbers = prefixes.get(word[:length])
                    if numbers:
                        found.update(numbers)
        return found


def _collect(found: set[int], table: dict[str, list[int]], present: dict[str, list[int]]) -> None:
    """Add the rules of every key in both tables, walking the smaller one."""
    if len(table) < len(present):
        for key, numbers in table.items():
            if key in present:
                found.update(numbers)
    else:
        for key in present:
            if key in table:
                found.update(table[key])


class RuleSet:
    """Compiled rules. Holds no per-article state: `match` may be called for any article."""

    def __init__(self, specs: Sequence[RuleSpec]) -> None:
        self._rules: list[_Rule] = []
        used: set[str] = set(DEFAULT_FIELDS)
        for spec in specs:
            query = parse(spec.query)
            exclude = parse(spec.exclude) if spec.exclude is not None else None
            used |= _fields_of(query)
            if exclude is not None:
                used |= _fields_of(exclude)
            self._rules.append(
                _Rule(
                    name=spec.name,
                    language=normalize_language(spec.language),
                    query=_compile(query, DEFAULT_FIELDS),
                    exclude=_compile(exclude, DEFAULT_FIELDS) if exclude is not None else None,
                )
            )
        self._fields = frozenset(used)
        self._groups: dict[str | None, list[tuple[int, _Rule]]] = {}
        for number, rule in enumerate(self._rules):
            self._groups.setdefault(rule.language, []).append((number, rule))
        self._indexes: dict[tuple[str | None, Mode], _TriggerIndex] = {}  # compiled lazily

    def match(self, article: Article, feed: FeedInfo) -> list[RuleMatch]:
        """Matched, non-excluded rules in spec order, with every positive term hit."""
        fields = _analyse(article, feed, self._fields)
        feed_mode = normalize_language(feed.language)
        matches: dict[int, RuleMatch] = {}
        for language, rules in self._groups.items():
            mode = language if language is not None else feed_mode
            index = self._indexes.get((language, mode))
            if index is None:
                index = self._indexes[(language, mode)] = _TriggerIndex(rules, mode)
            ctx = _Context(fields, mode)
            for number in index.candidates(ctx):
                required = index.required.get(number)
                if required is not None and not ctx.has_all(required):
                    continue
                rule = self._rules[number]
                occs = rule.query.eval(ctx)
                if occs is None:
                    continue
                if rule.exclude is not None and rule.exclude.eval(ctx) is not None:
                    continue
                matches[number] = RuleMatch(rule=rule.name, hits=_hits(occs))
        return [matches[number] for number in sorted(matches)]


_FIELD_ORDER = {name: i for i, name in enumerate(FIELDS)}


def _hits(occs: list[Occ]) -> tuple[Hit, ...]:
    """Distinct hits in field then text order; a hit inside a longer one of the same term
    (the part `cease` of the joined `cease-fire` for `cease*`) is dropped."""
    spans = sorted(
        {(o[0], o[3], o[4], o[5]) for o in occs}, key=lambda s: (_FIELD_ORDER[s[0]], s[1], -s[2])
    )
    reach: dict[tuple[str, str], int] = {}  # (field, term) -> furthest end kept so far
    hits: list[Hit] = []
    for field, start, end, term in spans:
        furthest = reach.get((field, term))
        if furthest is not None and end <= furthest:
            continue
        reach[(field, term)] = end
        hits.append(Hit(term=term, field=field, start=start, end=end))
    return tuple(hits)
