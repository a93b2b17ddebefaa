"""monitor.render: what each channel style shows and that feed text never becomes markup."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest

from monitor.models import Hit
from monitor.render import Story, render, snippet, template_problems

BERLIN = ZoneInfo("Europe/Berlin")
PUBLISHED = datetime(2026, 11, 26, 13, 5, tzinfo=UTC)
USA_TODAY = (
    "Ukraine warns Kremlin to 'retreat or be annihilated' in Kherson; "
    "US pushing deal to free Griner: Live updates - USA TODAY"
)
MENTIONS = "Breaking <!here> <!channel> <!everyone> <@U123> <!subteam^S1|team> & more"


def hits_for(text: str, *words: str, field: str = "title") -> tuple[Hit, ...]:
    found = []
    for word in words:
        for m in re.finditer(re.escape(word), text):
            found.append(Hit(term=word.lower(), field=field, start=m.start(), end=m.end()))
    return tuple(found)


def story(
    title: str = USA_TODAY,
    *,
    link: str | None = "https://eu.usatoday.com/story/news/2022/11/08/ukraine-live/",
    rules: tuple[str, ...] = ("ukraine-war", "Kherson front"),
    text: str | None = None,
    words: tuple[str, ...] = ("Ukraine", "Kherson"),
    feed: str = "usa-today",
    published_at: datetime | None = PUBLISHED,
) -> Story:
    snippet_text = title if text is None else text
    return Story(
        title=title,
        link=link,
        feed=feed,
        published_at=published_at,
        rules=rules,
        snippet_text=snippet_text,
        hits=hits_for(snippet_text, *words),
    )


def slack_unescaped_angles(body: str) -> list[str]:
    """`<` that apprise's Slack converter would pass on raw: any not written as `\\<`,
    except our own link destinations `](<http...>)`."""
    without_links = re.sub(r"\]\(<https?://[^>\s]*>\)", "](LINK)", body)
    return re.findall(r"(?<!\\)<[^ ]{0,20}", without_links)


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.hrefs += [value or "" for name, value in attrs if name == "href"]


def html_tags(body: str) -> TagCollector:
    collector = TagCollector()
    collector.feed(body)
    return collector


# --- every message shows every field ---------------------------------------------------------


@pytest.mark.parametrize("style", ["slack", "markdown", "email", "text", "console"])
def test_one_story_shows_title_rules_feed_time_link_and_snippet(style: str) -> None:
    message = render([story()], style=style, tz=BERLIN)
    assert message.title == USA_TODAY
    assert "ukraine-war" in message.body and "Kherson front" in message.body
    assert "usa-today" in message.body
    assert "2026-11-26 14:05 CET" in message.body
    assert "https://eu.usatoday.com/story/news/2022/11/08/ukraine-live/" in message.body
    assert "Griner" in message.body  # the snippet


@pytest.mark.parametrize(
    ("style", "body_format", "highlighted"),
    [
        ("slack", "markdown", "**Kherson**"),
        ("markdown", "markdown", "**Kherson**"),
        ("email", "html", "<b>Kherson</b>"),
        ("text", "text", "*Kherson*"),
        ("console", "text", "*Kherson*"),
    ],
)
def test_matched_words_are_highlighted_in_the_style_markup(
    style: str, body_format: str, highlighted: str
) -> None:
    message = render([story()], style=style, tz=BERLIN)
    assert message.body_format == body_format
    assert highlighted in message.body


def test_time_is_shown_in_the_channel_time_zone_and_unknown_when_missing() -> None:
    summer = story(published_at=datetime(2026, 7, 1, 22, 30, tzinfo=UTC))
    assert "2026-07-02 00:30 CEST" in render([summer], style="text", tz=BERLIN).body
    assert "2026-07-01 22:30 UTC" in render([summer], style="text", tz=UTC).body
    undated = story(published_at=None)
    assert "unknown" in render([undated], style="text", tz=BERLIN).body


def test_story_without_link_has_no_link_line() -> None:
    body = render([story(link=None)], style="email", tz=BERLIN).body
    assert "<a " not in body and "Link:" not in body


# --- escaping --------------------------------------------------------------------------------


@pytest.mark.parametrize("mention", ["<!here>", "<!channel>", "<!everyone>", "<@U123>"])
def test_slack_feed_text_never_carries_a_raw_mention(mention: str) -> None:
    s = story(MENTIONS, text=f"{MENTIONS} in the summary", words=("Breaking",))
    message = render([s], style="slack", tz=BERLIN)
    assert mention not in message.body
    assert "\\" + mention[:-1] + "\\>" in message.body  # escaped, still readable
    assert slack_unescaped_angles(message.body) == []
    # The title is passed as plain text: apprise's Slack plugin escapes it itself.
    assert message.title == MENTIONS


def test_slack_backslash_in_feed_text_cannot_unescape_a_mention() -> None:
    tricky = "a \\<!here> b \\\\<!channel>"
    body = render([story(tricky, words=())], style="slack", tz=BERLIN).body
    assert slack_unescaped_angles(body.replace("\\\\", "")) == []


def test_slack_link_is_a_link_and_markup_in_the_title_is_not() -> None:
    s = story("*Bold* _claim_ ~gone~ `code` [x](https://evil.example/)", words=())
    body = render([s], style="slack", tz=BERLIN).body
    first_line = body.splitlines()[0]
    assert first_line.startswith("[") and first_line.endswith(
        "](<https://eu.usatoday.com/story/news/2022/11/08/ukraine-live/>)"
    )
    assert "\\*Bold\\*" in body and "\\_claim\\_" in body and "\\~gone\\~" in body
    assert "\\[x\\](https://evil.example/)" in body


def test_email_html_contains_only_our_own_markup() -> None:
    evil = 'Spy <script>alert(1)</script> <img src=x onerror=alert(2)> "quoted" & co'
    s = story(evil, text=f"{evil} <a href='javascript:alert(3)'>click</a>", words=("Spy",))
    body = render([s], style="email", tz=BERLIN).body
    collected = html_tags(body)
    assert collected.tags <= {"p", "b", "br", "a", "hr"}
    assert collected.hrefs == ["https://eu.usatoday.com/story/news/2022/11/08/ukraine-live/"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(2)&gt;" in body


@pytest.mark.parametrize(
    "injection",
    [
        "*bold*",
        "**strong**",
        "_em_",
        "[click](https://evil.example/)",
        "`code`",
        "<b>x</b>",
        "@everyone",
    ],
)
def test_markdown_feed_text_is_escaped(injection: str) -> None:
    body = render([story(f"Headline {injection}", words=())], style="markdown", tz=BERLIN).body
    assert re.search(r"(?<!\\)" + re.escape(injection), body) is None
    # Every CommonMark special char of the injection is preceded by a backslash.
    for m in re.finditer(r"[*_\[\]`<>@]", injection):
        assert "\\" + m.group() in body


@pytest.mark.parametrize("style", ["slack", "markdown", "email", "text", "console"])
def test_cr_lf_in_titles_never_reach_the_message(style: str) -> None:
    s = story("Line one\r\nBcc: victim@example.org\rthree\nfour", words=())
    message = render([s], style=style, tz=BERLIN)
    assert message.title == "Line one Bcc: victim@example.org three four"
    assert "\r" not in message.title and "\n" not in message.title
    assert "\r" not in message.body
    assert "one\n" not in message.body and "one\r" not in message.body


@pytest.mark.parametrize(
    "link", ["javascript:alert(1)", "ftp://files.example.org/a", "data:text/html,<b>x</b>"]
)
def test_non_http_links_are_shown_but_not_clickable(link: str) -> None:
    s = story(link=link)
    slack = render([s], style="slack", tz=BERLIN).body
    assert "](<" not in slack and "`" + link + "`" in slack
    markdown = render([s], style="markdown", tz=BERLIN).body
    assert "](<" not in markdown and f"<{link}>" not in markdown
    email = render([s], style="email", tz=BERLIN).body
    assert html_tags(email).hrefs == [] and "Link:" in email


def test_http_links_are_clickable_in_every_markup_style() -> None:
    url = "https://example.org/a b?x=1&y=<2>"
    s = story(link=url)
    assert (
        "](<https://example.org/a%20b?x=1&y=%3C2%3E>)" in render([s], style="slack", tz=BERLIN).body
    )
    assert (
        "<https://example.org/a%20b?x=1&y=%3C2%3E>" in render([s], style="markdown", tz=BERLIN).body
    )
    assert html_tags(render([s], style="email", tz=BERLIN).body).hrefs == [
        "https://example.org/a b?x=1&y=<2>"
    ]


# --- several stories -------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["slack", "email", "text"])
def test_digest_of_100_stories_lists_every_story_with_its_rules(style: str) -> None:
    stories = [
        story(f"Headline number {i} about Ukraine", rules=(f"rule-{i}", "shared rule"))
        for i in range(100)
    ]
    message = render(stories, style=style, tz=BERLIN)
    assert message.title == "100 stories"
    for i in range(100):
        assert f"Headline number {i} about" in message.body
        assert f"rule-{i}," in message.body or f"rule\\-{i}," in message.body
    assert message.body.count("shared rule") == 100


def test_heading_names_a_summary() -> None:
    message = render(
        [story(), story()], style="email", tz=BERLIN, heading="Held during quiet hours"
    )
    assert message.title == "Held during quiet hours"
    assert "Held during quiet hours" in message.body


# --- snippets --------------------------------------------------------------------------------


def test_snippet_of_a_short_headline_is_the_whole_text_with_spans() -> None:
    text, spans = snippet(USA_TODAY, hits_for(USA_TODAY, "Ukraine", "Kherson"))
    assert text == USA_TODAY
    assert [text[s:e] for s, e in spans] == ["Ukraine", "Kherson"]


def test_snippet_windows_a_long_text_at_word_boundaries() -> None:
    filler = "The quick brown fox jumps over the lazy dog. " * 20
    text = filler + "IBM übernimmt Red Hat in a mega-deal. " + filler
    text_out, spans = snippet(text, hits_for(text, "Red Hat"), width=120)
    assert text_out.startswith("…") and text_out.endswith("…")
    assert len(text_out) <= 122
    assert [text_out[s:e] for s, e in spans] == ["Red Hat"]
    inner = text_out[1:-1]
    assert text.find(inner) > 0  # a real slice of the text
    start = text.find(inner)
    assert text[start - 1] == " " and text[start + len(inner)] == " "  # whole words


def test_snippet_without_hits_is_the_start_and_ignores_out_of_range_hits() -> None:
    text = "word " * 100
    out, spans = snippet(text, [Hit(term="x", field="text", start=900, end=905)], width=50)
    assert out.startswith("word") and out.endswith("…") and spans == []


def test_snippet_turns_line_breaks_into_spaces_and_keeps_offsets() -> None:
    text = "Kyiv\r\nNATO summit\nends"
    out, spans = snippet(text, hits_for(text, "NATO"))
    assert "\n" not in out and "\r" not in out
    assert [out[s:e] for s, e in spans] == ["NATO"]


def test_snippet_merges_overlapping_hits() -> None:
    text = "NATO membership talks"
    hits = [
        Hit(term="a", field="title", start=0, end=15),
        Hit(term="b", field="title", start=5, end=21),
    ]
    assert snippet(text, hits)[1] == [(0, 21)]


# --- templates -------------------------------------------------------------------------------


def test_template_problems_names_unknown_placeholders_and_stray_dollars() -> None:
    assert template_problems("${title} in ${feed} ($rules) $$5 ${snippet} ${link} $published") == []
    problems = template_problems("${title.__class__} ${author} $5")
    assert any("${author}" in p for p in problems)
    assert len(problems) == 3


def test_templates_substitute_escaped_values() -> None:
    s = story(MENTIONS, words=("Breaking",))
    message = render(
        [s],
        style="slack",
        tz=BERLIN,
        title_template="[${feed}] ${title}",
        body_template="*${rules}*: ${title}\n${snippet}",
    )
    assert message.title == f"[usa-today] {MENTIONS}"
    assert message.body.startswith("*ukraine-war, Kherson front*: [")
    assert slack_unescaped_angles(message.body) == []
    assert "**Breaking**" in message.body


def test_unknown_style_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        render([story()], style="fax", tz=BERLIN)
