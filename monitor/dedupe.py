"""Pure: story identity. One story has one id across every feed that ran it.

A story is identified by its canonical link (trackers stripped, see text.canonical_url), so the
same article syndicated by several feeds alerts once; an entry without a link is its own story.
"""

from __future__ import annotations

import hashlib

from monitor.models import Article


def story_id(article: Article) -> str:
    """A short stable id for the story an article belongs to."""
    basis = f"url:{article.link}" if article.link else f"item:{article.feed}:{article.key}"
    return hashlib.sha256(basis.encode()).hexdigest()[:24]
