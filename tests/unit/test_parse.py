"""parse_feed on real documents (tests/data) and on edge cases: bytes in, plain-text articles out."""

from __future__ import annotations

import csv
import json
import re

import pytest

from monitor.errors import FeedError
from monitor.models import ParsedFeed
from monitor.parse import parse_feed
from tests.feeds import DATA, sources

FEED_URL = "https://news.example.org/world/feed.xml"

# Element names that would show a leftover tag; `<AnyObject>` in a code sample is text.
HTML_TAGS = (
    "a", "abbr", "article", "aside", "b", "big", "blockquote", "body", "br", "caption", "center",
    "cite", "code", "dd", "div", "dl", "dt", "em", "embed", "figcaption", "figure", "font",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "head", "header", "hr", "html", "i",
    "iframe", "img", "input", "label", "li", "link", "meta", "nav", "noscript", "object", "ol",
    "p", "picture", "pre", "q", "s", "script", "section", "small", "source", "span", "strike",
    "strong", "style", "sub", "sup", "table", "tbody", "td", "th", "thead", "title", "tr", "u",
    "ul", "video", "audio",
)
TAG = re.compile(rf"</?(?:{'|'.join(HTML_TAGS)})(?:\s[^<>]*)?/?>", re.IGNORECASE)
ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-f]+|[a-z][a-z0-9]{1,31});", re.IGNORECASE)


def parse(body: bytes, headers: dict[str, str] | None = None, *, url: str = FEED_URL,
          max_entries: int = 1000) -> ParsedFeed:
    return parse_feed(body, feed="world", url=url, headers=headers or {}, max_entries=max_entries)


def malformed_rows() -> list[dict[str, str]]:
    with open(DATA / "malformed" / "EXPECTATIONS.tsv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def http_headers(row: dict[str, str]) -> dict[str, str]:
    if not row["http_header"]:
        return {}
    key, _, value = row["http_header"].partition(":")
    return {key.strip().lower(): value.strip()}


FEEDS = [r for r in sources() if r["local_file"].startswith("feeds/")]
MALFORMED = malformed_rows()


def test_the_corpus_is_all_there() -> None:
    assert len(FEEDS) == len(list((DATA / "feeds").iterdir())) >= 60
    assert len(MALFORMED) == len([p for p in (DATA / "malformed").iterdir() if p.suffix != ".tsv"])


# -- real feeds ---------------------------------------------------------------------------------

@pytest.mark.parametrize("row", FEEDS, ids=lambda r: r["local_file"][6:60])
def test_real_feeds_parse_into_clean_plain_text_articles(row: dict[str, str]) -> None:
    feed = parse((DATA / row["local_file"]).read_bytes())
    items = int(row["items"] or 0)
    entries = feed.entries
    if items:
        assert entries, "a feed with items gave no articles"
        # every item, except one a document repeats word for word
        assert items * 0.95 <= len(entries) <= items
    for article in entries:
        assert article.feed == "world"
        assert article.title, article
        for field in (article.title, article.text, article.author, *article.categories):
            assert not TAG.search(field), (TAG.search(field), field[:200])
            assert not ENTITY.search(field), (ENTITY.search(field), field[:200])
            assert "\n" not in field and "\r" not in field and field == field.strip()
        assert article.link is None or article.link.startswith(("http://", "https://"))
        assert article.published_at is None or article.published_at.tzinfo is not None
    keys = [a.key for a in entries]
    assert len(set(keys)) == len(keys)
    assert all(k.startswith(("guid:", "link:", "hash:")) for k in keys)


def test_real_feeds_mostly_have_links_and_dates() -> None:
    """Alerts show a link and a published time: the corpus must not lose them wholesale."""
    articles = [a for row in FEEDS for a in parse((DATA / row["local_file"]).read_bytes()).entries]
    assert len(articles) > 1000
    assert sum(a.link is not None for a in articles) / len(articles) > 0.95
    assert sum(a.published_at is not None for a in articles) / len(articles) > 0.9


@pytest.mark.parametrize("name", ["miniflux+v2__internal__reader__parser__testdata__encoding_ISO-8859-1.xml",
                                  "Tehtehteh+data-import__tests__stubs__stub_unian_rss.xml",
                                  "arminreiter+FeedReader__FeedReader.Tests__Feeds__Rss20YandexRussia.xml"])
def test_non_ascii_feeds_decode_without_replacement_characters(name: str) -> None:
    feed = parse((DATA / "feeds" / name).read_bytes())
    text = " ".join(a.title + " " + a.text for a in feed.entries)
    assert "\ufffd" not in text
    assert re.search(r"[^\x00-\x7f]", text)


def test_max_entries_keeps_the_first_and_counts_the_rest() -> None:
    row = max(FEEDS, key=lambda r: int(r["items"] or 0))
    body = (DATA / row["local_file"]).read_bytes()
    full = parse(body)
    cut = parse(body, max_entries=5)
    assert [a.key for a in cut.entries] == [a.key for a in full.entries[:5]]
    assert len(cut.skipped_keys) == int(row["items"]) - 5


# -- malformed and edge-case documents ----------------------------------------------------------

@pytest.mark.parametrize("row", MALFORMED, ids=lambda r: r["local_file"][:60])
def test_malformed_documents_never_raise_anything_but_feed_error(row: dict[str, str]) -> None:
    body = (DATA / "malformed" / row["local_file"]).read_bytes()
    observed = re.search(r"(\d+) entries", row["observed_feedparser_6_0_14"])
    try:
        feed = parse(body, http_headers(row))
    except FeedError as exc:
        assert exc.message and "'world'" not in exc.message  # the caller names the feed
        assert not (row["expected"].startswith("PARSE") and observed and int(observed[1])), \
            f"the source project expects entries here: {exc.message}"
        return
    if row["expected"].startswith("PARSE") and observed and int(observed[1]):
        assert feed.entries, "the source project expects entries here"
    for article in feed.entries:
        assert not TAG.search(article.title), article.title
        assert "\n" not in article.title
    assert len({a.key for a in feed.entries}) == len(feed.entries)


@pytest.mark.parametrize("name", ["danmactough+node-feedparser__test__feeds__notafeed.html"])
def test_html_page_from_the_corpus_is_a_feed_error(name: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse((DATA / "malformed" / name).read_bytes(), {"content-type": "text/html"})
    assert "HTML page" in caught.value.message and FEED_URL in caught.value.message


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "empty"), (b"  \n\t ", "empty"), (b"\x00\x01\x02binary", "not a readable feed"),
    (b"just some text", "not a readable feed"), (b"<note><to>Tove</to></note>", "not a readable feed"),
    (b'{"version": "https://jsonfeed.org/version/1.1", "title": "x"}', "JSON Feed"),
    (b"{not json", "not valid JSON"), (b"[1, 2, 3]", "not a"),
])
def test_documents_that_are_not_feeds_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse(body)
    assert reason in caught.value.message
    assert "'world'" not in caught.value.message  # the caller names the feed


@pytest.mark.parametrize(("name", "expected"), [
    ("miniflux+v2__internal__reader__encoding__testdata__koi8r.xml", "Первая новость"),
    ("miniflux+v2__internal__reader__encoding__testdata__utf8-incorrect-prolog.xml", "Café"),
    ("miniflux+v2__internal__reader__encoding__testdata__invalid-prolog.xml", "Café"),
    ("kurtmckee+feedparser__tests__wellformed__rss__entity_in_doctype.xml", None),
])
def test_encodings_are_decoded(name: str, expected: str | None) -> None:
    feed = parse((DATA / "malformed" / name).read_bytes())
    assert feed.entries
    if expected:
        assert feed.entries[0].title == expected


def test_script_and_markup_never_reach_the_text() -> None:
    script = parse((DATA / "malformed" / "kurtmckee+feedparser__tests__wellformed__sanitize__"
                    "entry_content_script.xml").read_bytes())
    assert script.entries[0].text == "safe description"
    crazy = parse((DATA / "malformed" / "kurtmckee+feedparser__tests__wellformed__sanitize__"
                   "entry_summary_crazy.xml").read_bytes())
    assert "function executeMe" not in crazy.entries[0].text
    assert "<" not in crazy.entries[0].text


@pytest.mark.parametrize(("name", "link"), [
    ("lemon24+reader__tests__data__relative.rss", "https://news.example.org/world/blog/post/1"),
    ("lemon24+reader__tests__data__relative.atom", "https://news.example.org/world/entries/entry.html"),
])
def test_relative_entry_links_resolve_against_the_feed_url(name: str, link: str) -> None:
    [entry] = parse((DATA / "malformed" / name).read_bytes()).entries
    assert entry.link == link
    assert entry.text == "one two three content"
    assert "evil" not in entry.text


# -- a small RSS document -----------------------------------------------------------------------

def rss(*items: str, channel: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>World</title>'
            f"<link>https://news.example.org/</link>{channel}{''.join(items)}</channel></rss>").encode()


def item(title: str, *, guid: str | None = None, link: str | None = None, description: str = "",
         extra: str = "") -> str:
    return (f"<item><title>{title}</title>" + (f"<guid>{guid}</guid>" if guid is not None else "")
            + (f"<link>{link}</link>" if link else "")
            + f"<description>{description}</description>{extra}</item>")


def test_rss_fields_become_plain_text() -> None:
    feed = parse(rss(
        item("Truce &amp; talks: &lt;b&gt;Kyiv&lt;/b&gt;\n  says   &#8220;no&#8221;",
             guid="tag:news.example.org,2025:1",
             link="https://news.example.org/a?utm_source=rss&amp;id=7#comments",
             description="&lt;p&gt;Peace&lt;br/&gt;talks&amp;nbsp;resume &lt;script&gt;x()&lt;/script&gt;&lt;/p&gt;",
             extra="<author>desk@news.example.org (World Desk)</author><category>Europe</category>"
                   "<pubDate>Sat, 01 Mar 2025 10:00:00 +0200</pubDate>"),
        channel="<ttl>60</ttl><language>uk</language>"))
    [a] = feed.entries
    assert a.title == "Truce & talks: Kyiv says \u201cno\u201d"
    assert a.text == "Peace talks\u00a0resume" or a.text == "Peace talks resume"
    assert a.link == "https://news.example.org/a?id=7"
    assert a.key == "guid:tag:news.example.org,2025:1"
    assert a.categories == ("Europe",)
    assert a.published_at is not None and a.published_at.isoformat() == "2025-03-01T08:00:00+00:00"
    assert (feed.title, feed.ttl_minutes, feed.language) == ("World", 60, "uk")


def test_guid_reused_for_different_entries_falls_back_to_the_link() -> None:
    feed = parse(rss(*[item(f"Story {n}", guid="https://news.example.org/", link=f"https://news.example.org/{n}")
                       for n in range(3)]))
    assert [a.key for a in feed.entries] == [f"link:https://news.example.org/{n}" for n in range(3)]


def test_guid_reused_without_links_falls_back_to_a_content_hash() -> None:
    feed = parse(rss(*[item(f"Story {n}", guid="0", description=f"Text {n}") for n in range(3)]))
    keys = [a.key for a in feed.entries]
    assert len(feed.entries) == 3 and len(set(keys)) == 3
    assert all(k.startswith("hash:") for k in keys)
    again = parse(rss(*[item(f"Story {n}", guid="0", description=f"Text {n}") for n in range(3)]))
    assert [a.key for a in again.entries] == keys  # stable between polls


def test_unique_guids_are_kept_and_an_absurdly_long_one_is_not_trusted() -> None:
    long_guid = "x" * 5000
    feed = parse(rss(item("A", guid="a-1", link="https://news.example.org/a"),
                     item("B", guid=long_guid, link="https://news.example.org/b")))
    assert [a.key for a in feed.entries] == ["guid:a-1", "link:https://news.example.org/b"]


def test_the_same_entry_twice_in_one_document_is_one_article() -> None:
    twice = item("Same", guid="s-1", link="https://news.example.org/s")
    feed = parse(rss(twice, twice, item("Other", guid="o-1")))
    assert [a.title for a in feed.entries] == ["Same", "Other"]


def test_entries_without_guid_or_link_get_distinct_stable_hashes() -> None:
    feed = parse(rss(item("One", description="first"), item("Two", description="second")))
    assert len({a.key for a in feed.entries}) == 2
    assert all(a.key.startswith("hash:") and a.link is None for a in feed.entries)


@pytest.mark.parametrize("link", ["javascript:alert(1)", "file:///etc/passwd", "mailto:a@b.c"])
def test_non_web_links_are_dropped(link: str) -> None:
    [a] = parse(rss(item("Story", guid="g", link=link))).entries
    assert a.link is None


def test_html_page_is_an_error_naming_the_feed_it_links_to() -> None:
    page = (b"<!DOCTYPE html><html><head><title>News</title>"
            b'<link rel="stylesheet" href="/style.css">'
            b'<link rel="alternate" type="application/rss+xml" title="RSS" href="/rss/world.xml">'
            b"</head><body><p>Latest</p></body></html>")
    with pytest.raises(FeedError) as caught:
        parse(page, {"content-type": "text/html; charset=utf-8"}, url="https://news.example.org/world/")
    error = caught.value
    assert "https://news.example.org/world/ is an HTML page" in error.message
    assert error.hint and "https://news.example.org/rss/world.xml" in error.hint


def test_html_page_without_a_feed_link_says_so_without_a_hint() -> None:
    with pytest.raises(FeedError) as caught:
        parse(b"<html><body>hello</body></html>")
    assert "HTML page" in caught.value.message and caught.value.hint is None


def test_wrong_content_type_is_still_parsed() -> None:
    feed = parse(rss(item("Story", guid="g")), {"content-type": "text/plain; charset=iso-8859-1"})
    assert [a.title for a in feed.entries] == ["Story"]


def test_a_few_invalid_bytes_are_parsed_anyway_with_a_warning() -> None:
    body = rss(item("Ceasefire talks resume", guid="g1"), item("Markets rise", guid="g2"))
    body = body.replace(b"talks", b"t\xffl\xfeks")
    feed = parse(body, {"content-type": "application/rss+xml; charset=utf-8"})
    assert [a.key for a in feed.entries] == ["guid:g1", "guid:g2"]
    assert feed.entries[1].title == "Markets rise"
    assert feed.entries[0].title.startswith("Ceasefire")


# -- JSON Feed ----------------------------------------------------------------------------------

JSON10 = {
    "version": "https://jsonfeed.org/version/1", "title": "JSON World", "home_page_url": "https://j.example.org/",
    "author": {"name": "Feed Author"},
    "items": [
        {"id": "1", "title": "Truce holds", "content_html": "<p>Quiet <b>night</b> &amp; morning</p>",
         "url": "https://j.example.org/1", "date_published": "2025-03-01T10:00:00+02:00",
         "author": {"name": "Olena"}, "tags": ["Ukraine", "peace"]},
        {"id": 2, "content_text": "A note without a title", "url": "https://j.example.org/2",
         "date_modified": "2025-03-01T11:00:00Z"},
    ],
}
JSON11 = {
    "version": "https://jsonfeed.org/version/1.1", "title": "JSON World", "language": "uk",
    "items": [
        {"id": "a", "title": "Talks resume", "summary": "Short", "content_text": "Long text",
         "external_url": "https://elsewhere.example.org/a", "authors": [{"name": "Ann"}, {"name": "Bob"}],
         "date_published": "2025-03-01T10:00:00Z"},
    ],
}


def test_json_feed_1_0() -> None:
    feed = parse(json.dumps(JSON10).encode(), {"content-type": "application/json"})
    first, second = feed.entries
    assert feed.title == "JSON World"
    assert (first.key, first.title, first.text) == ("guid:1", "Truce holds", "Quiet night & morning")
    assert first.link == "https://j.example.org/1"
    assert first.author == "Olena"
    assert first.categories == ("Ukraine", "peace")
    assert first.published_at is not None and first.published_at.isoformat() == "2025-03-01T08:00:00+00:00"
    assert second.key == "guid:2" and second.title == "" and second.text == "A note without a title"
    assert second.published_at is not None and second.published_at.hour == 11


def test_json_feed_1_1_without_a_json_content_type() -> None:
    feed = parse(json.dumps(JSON11).encode("utf-8"), {"content-type": "text/plain"})
    [a] = feed.entries
    assert feed.language == "uk"
    assert a.author == "Ann, Bob"
    assert a.text == "Short Long text"
    assert a.link == "https://elsewhere.example.org/a"


def test_json_feed_with_a_bom_and_reused_ids() -> None:
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "x",
           "items": [{"id": "same", "title": "A", "url": "https://j.example.org/a"},
                     {"id": "same", "title": "B", "url": "https://j.example.org/b"}]}
    feed = parse(b"\xef\xbb\xbf" + json.dumps(doc).encode())
    assert [a.key for a in feed.entries] == ["link:https://j.example.org/a", "link:https://j.example.org/b"]


@pytest.mark.parametrize("name", ["NicolasLM+atoma__tests__json_feed__jsonfeed.org.json",
                                  "feedjira+feedjira__spec__sample_feeds__json_feed.json",
                                  "Ranchero-Software+RSParser__Tests__RSParserTests__Resources__DaringFireball.json"])
def test_real_json_feeds(name: str) -> None:
    feed = parse((DATA / "feeds" / name).read_bytes(), {"content-type": "application/feed+json"})
    assert feed.title and feed.entries
    assert all(a.link and a.link.startswith("http") for a in feed.entries)


def test_json_feed_values_of_the_wrong_type_are_dropped_not_shown() -> None:
    feed = parse((DATA / "malformed" / "lemon24+reader__tests__data__invalid.json").read_bytes())
    assert feed.title == ""
    assert feed.language is None
    shown = [a.title + " " + a.text + " " + a.author for a in feed.entries]
    assert not any("[" in s or "{" in s or "True" in s for s in shown), shown
    assert "Jane" in {a.author for a in feed.entries}
    assert "float id" in {a.title for a in feed.entries}


# -- encodings ----------------------------------------------------------------------------------

UKRAINIAN = DATA / "feeds" / "Tehtehteh+data-import__tests__stubs__stub_unian_rss.xml"


def corrupt(body: bytes, count: int) -> bytes:
    """`count` bytes inside titles replaced with 0xFF, far apart."""
    spots = [m.start() + len(b"<title>") for m in re.finditer(rb"<title>", body)][1::5][:count]
    out = bytearray(body)
    for spot in spots:
        out[spot] = 0xFF
    return bytes(out)


@pytest.mark.parametrize("headers", [{}, {"content-type": "application/rss+xml; charset=utf-8"}])
def test_a_few_invalid_bytes_do_not_garble_the_rest_of_a_utf8_feed(headers: dict[str, str]) -> None:
    clean = parse(UKRAINIAN.read_bytes(), headers)
    damaged = parse(corrupt(UKRAINIAN.read_bytes(), 3), headers)
    assert len(damaged.entries) == len(clean.entries)
    same = sum(a.title == b.title for a, b in zip(clean.entries, damaged.entries, strict=True))
    assert same >= len(clean.entries) - 3
    assert not any(ch in a.title for a in damaged.entries for ch in "ÐÑĐŃ")  # no mojibake
    assert any("invalid" in w for w in damaged.warnings)


def test_latin1_without_a_prolog_is_still_read_as_latin1() -> None:
    feed = parse((DATA / "malformed" / "rbren+rss-parser__test__input__uolNoticias.rss").read_bytes())
    text = " ".join(a.title + " " + a.text for a in feed.entries)
    assert len(feed.entries) == 15
    assert "\ufffd" not in text
    assert re.search("[çãéõí]", text)


def test_a_document_declaring_another_encoding_is_decoded_as_declared() -> None:
    body = ('<?xml version="1.0" encoding="koi8-r"?><rss version="2.0"><channel><title>Новости</title>'
            "<item><title>Переговоры о перемирии</title><guid>1</guid></item></channel></rss>"
            ).encode("koi8-r")
    [a] = parse(body).entries
    assert a.title == "Переговоры о перемирии"


def test_a_permalink_guid_that_is_not_a_url_is_not_a_link() -> None:
    [a] = parse(rss(item("Story", guid="12345"))).entries
    assert a.link is None and a.key == "guid:12345"
