"""Watch rules: compile queries once, then match articles against all of them.

Pure: no I/O. The query language is documented for users in docs/rules.md; `query.py` parses
it, `matcher.py` evaluates one query, this module runs many rules at once.

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

from collections.abc import Sequence
from dataclasses import dataclass

from monitor.analyze import FieldIndex, Mode, normalize_language
from monitor.matcher import Context, Key, Matcher, Occ, compile_query, fields_of
from monitor.models import Article, Hit, RuleMatch
from monitor.query import DEFAULT_FIELDS, FIELDS, Node, format_query, parse

__all__ = ["FeedInfo", "Node", "RuleSet", "RuleSpec", "format_query", "parse"]


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


# --- the rule set --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    name: str
    language: str | None  # normalised; None: the feed's language
    query: Matcher
    exclude: Matcher | None


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

    def candidates(self, ctx: Context) -> set[int]:
        found = set(self.always)
        for name, field in ctx.fields.items():
            if self.words:
                _collect(found, self.words, field.by_word)
            if self.stems:
                _collect(found, self.stems, ctx.stems[name])
            for length, prefixes in self.prefixes.items():
                for word in field.by_word:
                    if len(word) >= length:
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
            used |= fields_of(query)
            if exclude is not None:
                used |= fields_of(exclude)
            self._rules.append(
                _Rule(
                    name=spec.name,
                    language=normalize_language(spec.language),
                    query=compile_query(query, DEFAULT_FIELDS),
                    exclude=compile_query(exclude, DEFAULT_FIELDS) if exclude is not None else None,
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
            ctx = Context(fields, mode)
            required = index.required
            for number in index.candidates(ctx):
                if number in required and not ctx.has_all(required[number]):
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
    if len(occs) == 1:
        occ = occs[0]
        return (Hit(term=occ[5], field=occ[0], start=occ[3], end=occ[4]),)
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
