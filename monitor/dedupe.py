"""Pure: story identity. One story has one id across every feed that ran it.

Two signs that two entries are the same story:
- the same canonical link (trackers stripped, see text.canonical_url): syndication of one page;
- the same headline, word for word after case, accent and punctuation folding, with at least
  MIN_TITLE_WORDS words, first seen within TITLE_WINDOW: wire copy run by several outlets under
  their own links. Short headlines ("Live updates") are too generic to identify a story.
An entry with neither is its own story.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from monitor.analyze import tokenize
from monitor.models import Article

MIN_TITLE_WORDS = 5
TITLE_WINDOW = timedelta(hours=48)


def story_id(article: Article) -> str:
    """A short stable id for the story an article starts, from its link (or itself)."""
    basis = f"url:{article.link}" if article.link else f"item:{article.feed}:{article.key}"
    return _digest(basis)


def title_key(title: str) -> str | None:
    """The headline's identity for matching wire copy across outlets, or None when too short."""
    words = [token.folded for token in tokenize(title) if not token.joined]
    if len(words) < MIN_TITLE_WORDS:
        return None
    return _digest("title:" + " ".join(words))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]
