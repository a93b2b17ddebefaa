"""Feed fixtures for tests: real corpus documents, and variants made from them in memory."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

DATA = Path(__file__).resolve().parent / "data"


def sources() -> list[dict[str, str]]:
    with open(DATA / "SOURCES.tsv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def rss_feeds(count: int) -> list[Path]:
    """Real UTF-8 RSS 2.0 news feeds with items, in a stable order."""
    rows = [r for r in sources() if r["local_file"].startswith("feeds/") and r["format"] == "rss20"
            and r["encoding_detected"] == "utf-8" and int(r["items"] or 0) >= 5]
    files = [DATA / r["local_file"] for r in rows]
    return [f for f in files if b"<item>" in f.read_bytes()][:count]


@dataclass(frozen=True)
class Item:
    title: str
    link: str
    description: str = ""
    guid: str | None = None
    published: datetime | None = None

    def xml(self) -> bytes:
        published = format_datetime(self.published or datetime.now(UTC), usegmt=True)
        guid = f"<guid isPermaLink=\"false\">{escape(self.guid)}</guid>" if self.guid else ""
        return (f"<item><title>{escape(self.title)}</title><link>{escape(self.link)}</link>"
                f"<description>{escape(self.description)}</description>{guid}"
                f"<pubDate>{published}</pubDate></item>\n").encode()


def with_items(document: bytes, items: list[Item]) -> bytes:
    """The document with new items inserted before its first item, as a publisher would."""
    at = document.index(b"<item>")
    return document[:at] + b"".join(i.xml() for i in items) + document[at:]
