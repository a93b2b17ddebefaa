"""Unicode text analysis for watch rules: folding, tokenising, language guessing, stemming.

Pure: no I/O. simplemma (Ukrainian) is imported lazily, the first time a Ukrainian word
needs a lemma, because its dictionaries cost about 64 MB.

Folding (`fold`) is what makes matching case- and accent-insensitive:

- `str.casefold()` first (so `ß` becomes `ss`, final `ς` becomes `σ`, `İ` ...);
- then NFKD, dropping combining marks, so `é`->`e`, `ü`->`u`, `ά`->`α`, `ﬁ`->`fi`, `²`->`2`,
  but only on Latin, Greek and Cyrillic letters: in Devanagari or Arabic the marks are
  vowels, so other scripts are left as they are;
- except in Cyrillic, where NFKD would destroy letters: `й`, `ї` and `ў` are letters of their
  own (`й` is not `и` with an accent), so they are kept. `ё` folds to `е`, because Russian
  news mostly prints `е` for `ё` and the Snowball Russian stemmer treats them as equal.
- typographic apostrophes (’ ʼ ‘ `) fold to `'`.

Tokens: a word is a run of letters, digits and combining marks, which may contain
apostrophes between letters (`Kyiv's`, `п’ять` are one word). Everything else separates
words. A hyphenated word (`cease-fire`, `NATO-membership`) yields its parts at consecutive
positions plus the joined word (`ceasefire`) spanning the parts' positions and characters.
A word starting with an elided French or Italian article or particle (`l'armée`, `d'un`,
`dell'anno`) also yields the word without it (`armée`) at the same position; other
apostrophes (`Kyiv's`, `O'Brien`, Ukrainian `п'ять`) never split a word.
Scripts written without spaces (Chinese, Japanese, Thai) are not segmented: a run of them is
one word, so only `/regex/` terms find text inside it.
"""

from __future__ import annotations

import bisect
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import regex
import Stemmer

_LETTER = r"[\p{L}\p{N}\p{M}]"
_WORD = rf"{_LETTER}+(?:['’ʼ‘`]{_LETTER}+)*"
_HYPHENS = "-\u2010\u2011"
# One match is a word or a hyphenated compound of words.
_COMPOUND_RE = regex.compile(rf"{_WORD}(?:[{_HYPHENS}]{_WORD})*")
_HYPHEN_SPLIT_RE = regex.compile(rf"[{_HYPHENS}]")

_APOSTROPHES = str.maketrans({"’": "'", "ʼ": "'", "‘": "'", "`": "'"})
# Cyrillic letters that NFKD would decompose into another letter plus a mark.
_KEEP_COMPOSED = frozenset("йїў")
# Elided articles and particles (French, Italian) that prefix a word with an apostrophe.
_ELISIONS = frozenset(
    {
        "l", "d", "j", "m", "n", "s", "t", "c", "qu", "jusqu", "lorsqu", "puisqu", "quoiqu",
        "presqu", "quelqu", "dell", "nell", "all", "dall", "sull", "coll", "un", "quell",
    }
)  # fmt: skip

_TAG_GAP = 1000  # word positions between a field's values
# The declared language stems are computed for; None: guess it from each word's script.
Mode = str | None


class Token(NamedTuple):
    """One word of a text. `first`/`last` are word positions (equal except for a joined
    hyphenated word, which spans its parts); `start`/`end` are character offsets."""

    start: int
    end: int
    first: int
    last: int
    word: str  # as written (a joined compound without its hyphens)
    folded: str
    joined: bool  # an extra form at the same positions: a compound joined, an elision cut


@lru_cache(maxsize=65536)
def _fold_char(char: str) -> str:
    if char in _KEEP_COMPOSED:
        return char
    if char == "ё":
        return "е"
    decomposed = unicodedata.normalize("NFKD", char)
    if not _is_european(decomposed[0]):
        return char  # marks are letters' vowels in Devanagari, Arabic ...: keep them
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    # Compatibility forms can decompose to capitals (℠ -> SM), casefolding can compose.
    if stripped.isascii():
        return stripped
    return "".join(
        c for c in unicodedata.normalize("NFKD", stripped) if not unicodedata.combining(c)
    )


def _is_european(char: str) -> bool:
    """Latin, Greek or Cyrillic (and their combining marks), where accents fold away."""
    point = ord(char)
    return point < 0x530 or 0x1E00 <= point <= 0x1FFF


# Word caches: plain dicts, emptied when full, because a bounded lru_cache costs several
# times a dict lookup and these sit in the per-word hot loop. News vocabulary is small.
_CACHE_LIMIT = 200_000
_folded: dict[str, str] = {}
_stems: dict[Mode, dict[str, str]] = {}


def fold(text: str) -> str:
    """Case- and accent-fold `text` (see the module docstring for what is kept)."""
    folded = _folded.get(text)
    if folded is None:
        if len(_folded) >= _CACHE_LIMIT:
            _folded.clear()
        folded = _folded[text] = _fold(text)
    return folded


def _fold(text: str) -> str:
    lowered = text.casefold()
    if lowered.isascii():
        return lowered.translate(_APOSTROPHES) if "`" in lowered else lowered
    lowered = unicodedata.normalize("NFC", lowered).translate(_APOSTROPHES)
    return "".join(_fold_char(c) if not c.isascii() else c for c in lowered)


def tokenize(text: str) -> list[Token]:
    """Split `text` into words with offsets and positions (see the module docstring)."""
    return [Token._make(raw) for raw in _scan(text)]


_Raw = tuple[int, int, int, int, str, str, bool]  # a Token's fields, without its class


def _scan(text: str) -> list[_Raw]:
    # The hot loop of matching: plain tuples and a fast path for plain words.
    tokens: list[_Raw] = []
    append = tokens.append
    find = text.find
    folded = _folded.get
    pos = cursor = 0
    for word in _COMPOUND_RE.findall(text):  # findall + str.find beats finditer's Match objects
        start = find(word, cursor)
        cursor = start + len(word)
        if word.isalnum():  # no hyphen, apostrophe or combining mark
            append((start, cursor, pos, pos, word, folded(word) or fold(word), False))
            pos += 1
        elif "-" not in word and "\u2010" not in word and "\u2011" not in word:
            _add_word(append, word, start, pos)
            pos += 1
        else:
            first = pos
            offset = start
            for part in _HYPHEN_SPLIT_RE.split(word):
                _add_word(append, part, offset, pos)
                offset += len(part) + 1
                pos += 1
            # The joined form is what stemming sees, so it is stored without hyphens.
            joined = _HYPHEN_SPLIT_RE.sub("", word)
            append((start, cursor, first, pos - 1, joined, fold(joined), True))
    return tokens


def _add_word(append: Callable[[_Raw], None], word: str, start: int, pos: int) -> None:
    folded = fold(word)
    append((start, start + len(word), pos, pos, word, folded, False))
    head, apostrophe, rest = folded.partition("'")
    if apostrophe and head in _ELISIONS:
        # French/Italian elided article: "l'armée" is also "armée" (same position).
        cut = len(word) - len(rest)
        append((start + cut, start + len(word), pos, pos, word[cut:], rest, True))


# --- languages ----------------------------------------------------------------------------

_SNOWBALL = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german",
    "el": "greek", "en": "english", "es": "spanish", "eu": "basque", "fi": "finnish",
    "fr": "french", "ga": "irish", "hi": "hindi", "hu": "hungarian", "hy": "armenian",
    "id": "indonesian", "it": "italian", "lt": "lithuanian", "nb": "norwegian",
    "ne": "nepali", "nl": "dutch", "nn": "norwegian", "no": "norwegian", "fa": "persian",
    "pl": "polish", "pt": "portuguese", "ro": "romanian", "ru": "russian", "sr": "serbian",
    "sv": "swedish", "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}  # fmt: skip
UKRAINIAN = "uk"

_CYRILLIC, _GREEK, _LATIN, _OTHER = "cyrillic", "greek", "latin", "other"
_LANGUAGE_SCRIPT = {
    "ru": _CYRILLIC, "uk": _CYRILLIC, "be": _CYRILLIC, "bg": _CYRILLIC, "mk": _CYRILLIC,
    "sr": _CYRILLIC, "kk": _CYRILLIC, "el": _GREEK, "ar": _OTHER, "fa": _OTHER, "hi": _OTHER,
    "ne": _OTHER, "hy": _OTHER, "ta": _OTHER, "yi": _OTHER, "zh": _OTHER, "ja": _OTHER,
    "ko": _OTHER, "th": _OTHER, "ur": _OTHER, "he": _OTHER, "ka": _OTHER, "bn": _OTHER,
}  # fmt: skip
# Any other declared language is taken to be written in Latin script.
_UKRAINIAN_LETTERS = frozenset("іїєґ")


def known_language(code: str) -> bool:
    """Whether a declared language (`en`, `en-US`, `uk` ...) is one monitor knows."""
    base = normalize_language(code)
    return base is not None and (base in _SNOWBALL or base in _LANGUAGE_SCRIPT or base == UKRAINIAN)


def normalize_language(code: str | None) -> str | None:
    """`en-US`, `en_us`, `EN` -> `en`; None or blank -> None."""
    if code is None:
        return None
    base = code.strip().replace("_", "-").split("-", 1)[0].lower()
    return base or None


def _script(folded: str) -> str | None:
    for char in folded:
        if char.isalpha():
            point = ord(char)
            if point < 0x250 or 0x1E00 <= point <= 0x1EFF:
                return _LATIN
            if 0x370 <= point <= 0x3FF or 0x1F00 <= point <= 0x1FFF:
                return _GREEK
            if 0x400 <= point <= 0x52F:
                return _CYRILLIC
            return _OTHER
    return None  # digits only


def word_language(folded: str, declared: str | None) -> str | None:
    """The language to stem `folded` in: `declared` when the word is written in that
    language's script, else a guess from the script (Cyrillic: Russian, or Ukrainian when
    the word has і ї є ґ; Greek; Latin: English). None means: do not stem."""
    script = _script(folded)
    if script is None:
        return None
    if declared is not None and _LANGUAGE_SCRIPT.get(declared, _LATIN) == script:
        return declared
    if script == _CYRILLIC:
        return UKRAINIAN if _UKRAINIAN_LETTERS.intersection(folded) else "ru"
    if script == _GREEK:
        return "el"
    if script == _LATIN:
        return "en"
    return None


_stemmers: dict[str, Any] = {}
_lemmatize: Any = None


def _snowball(language: str) -> Any:
    stemmer = _stemmers.get(language)
    if stemmer is None:
        stemmer = _stemmers[language] = Stemmer.Stemmer(_SNOWBALL[language])
    return stemmer


def _ukrainian_lemma(word: str) -> str:
    global _lemmatize
    if _lemmatize is None:
        from simplemma import lemmatize  # lazy: ~64 MB of dictionaries

        _lemmatize = lemmatize
    return str(_lemmatize(word.translate(_APOSTROPHES), lang=UKRAINIAN))


def stem(word: str, declared: str | None = None) -> str:
    """The folded stem (or Ukrainian lemma) of one word as written; `declared` is a
    normalised language code or None (guess from the script). Unsupported languages
    fall back to the folded word, i.e. exact matching."""
    cache = _stems.get(declared)
    if cache is None:
        cache = _stems[declared] = {}
    found = cache.get(word)
    if found is None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        found = cache[word] = _stem(word, declared)
    return found


def _stem(word: str, declared: str | None) -> str:
    folded = fold(word)
    language = word_language(folded, declared)
    if language is None:
        return folded
    if language == UKRAINIAN:
        # simplemma knows proper nouns by their capital, so it gets the word as written.
        return fold(_ukrainian_lemma(word))
    if language not in _SNOWBALL:
        return folded
    return str(_snowball(language).stemWord(folded))


class FieldIndex:
    """The words of one article field, by folded form and (lazily, per language mode) by
    stem. The first value has real offsets; further values (a feed's tags) are searchable
    but carry an empty span (0, 0), and sit far apart in positions so no phrase joins them.
    `tokens[i]` is (start, end, first, last, word, folded, joined) as in `Token`."""

    def __init__(self, name: str, values: Sequence[str]) -> None:
        self.name = name
        self.text = values[0]
        self.tokens = tokens = _scan(values[0])
        self.extra: list[tuple[str, int]] = []  # (a further value, its first position)
        if len(values) > 1:
            base = (tokens[-1][3] + 1 if tokens else 0) + _TAG_GAP
            for value in values[1:]:
                self.extra.append((value, base))
                tokens.extend(
                    (0, 0, base + t[2], base + t[3], t[4], t[5], t[6]) for t in _scan(value)
                )
                base += _TAG_GAP
        self.by_word: dict[str, list[int]] = {}
        for index, token in enumerate(tokens):
            found = self.by_word.get(token[5])
            if found is None:
                self.by_word[token[5]] = [index]
            else:
                found.append(index)
        self._stems: dict[Mode, dict[str, list[int]]] = {}
        self._parts: tuple[list[int], list[int]] | None = None

    def stems(self, mode: Mode) -> dict[str, list[int]]:
        table = self._stems.get(mode)
        if table is None:
            table = self._stems[mode] = {}
            tokens = self.tokens
            cached = _stems.setdefault(mode, {})
            for indexes in self.by_word.values():
                # One stem per folded word; Ukrainian lemmas see its first spelling's case.
                word = tokens[indexes[0]][4]
                key = cached.get(word) or stem(word, mode)
                found = table.get(key)
                # Shares by_word's list; a new list when two words share a stem.
                table[key] = indexes if found is None else found + indexes
        return table

    def positions(self, start: int, end: int) -> tuple[int, int]:
        """First and last word positions overlapping the characters start:end of `text`."""
        if self._parts is None:
            parts = [t for t in self.tokens if not t[6] and t[1] > 0]
            self._parts = ([t[0] for t in parts], [t[1] for t in parts])  # index == position
        starts, ends = self._parts
        first = bisect.bisect_right(ends, start)
        return first, max(first, bisect.bisect_left(starts, end) - 1)
