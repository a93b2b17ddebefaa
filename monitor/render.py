"""Alerts -> messages, one markup style per kind of channel. Pure: no I/O, no clock.

Feed text is hostile: every style escapes it so that only our own markup is live (no Slack
mentions, no HTML from the feed, no markdown injection). Styles:

- "slack": CommonMark written for apprise's Slack converter, which turns `\\<` into `&lt;`,
  `&` into `&amp;`, `**x**` into `*x*` and `[t](<u>)` into `<u|t>`. We cannot hand apprise
  finished mrkdwn: in markdown mode it re-interprets it, in passthrough mode it revives
  `&lt;!here&gt;` as a live mention, and in text mode nothing is clickable.
- "markdown": CommonMark for apprise plugins whose native format is markdown.
- "email": HTML (apprise builds the text/plain alternative from it, so URLs are also shown
  as visible text: its HTML-to-text conversion drops href targets).
- "text" / "console": plain text.
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from monitor.models import Hit

PLACEHOLDERS = ("title", "link", "feed", "published", "rules", "snippet")
STYLES = ("slack", "markdown", "email", "text", "console")
ELLIPSIS = "…"


@dataclass(frozen=True, kw_only=True)
class Story:
    """One story in a message."""

    title: str  # as published (whitespace collapsed, CR/LF removed)
    link: str | None
    feed: str  # feed name
    published_at: datetime | None  # aware UTC
    rules: tuple[str, ...]  # rule names exactly as written in the config
    snippet_text: str  # the field text the first match is in (title or text)
    hits: tuple[Hit, ...]  # offsets into snippet_text (may be empty)


@dataclass(frozen=True, kw_only=True)
class Message:
    """What a channel is sent: body_format is an apprise NotifyFormat value."""

    title: str
    body: str
    body_format: str  # "text" | "markdown" | "html"


# --- snippets -------------------------------------------------------------------------------


def snippet(text: str, hits: Sequence[Hit], width: int = 240) -> tuple[str, list[tuple[int, int]]]:
    """A window of about `width` characters around the first hit, cut at word boundaries
    (marked with "…"), and the highlight spans relative to the returned text.

    Whitespace (CR/LF included) becomes single spaces one for one, so offsets stay valid.
    Hits outside `text` are ignored; without hits the window is the start of the text.
    """
    valid = sorted(
        (h for h in hits if 0 <= h.start < h.end <= len(text)), key=lambda h: (h.start, h.end)
    )
    if valid:
        first = valid[0]
        # About a third of the room goes before the hit: enough to read the context.
        lead = max(0, (width - (first.end - first.start)) // 3)
        start = max(0, first.start - lead)
        end = max(first.end, min(len(text), start + width))
        start = max(0, min(start, end - width))  # near the end of the text, show more before
        start = _cut_start(text, start, first.start)
        end = _cut_end(text, end, first.end)
    else:
        start, end = 0, _cut_end(text, min(len(text), width), 0)

    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    prefix = ELLIPSIS if start > 0 else ""
    suffix = ELLIPSIS if end < len(text) else ""
    window = "".join(" " if c.isspace() else c for c in text[start:end])

    spans: list[tuple[int, int]] = []
    for hit in valid:
        s, e = max(hit.start, start), min(hit.end, end)
        if s >= e:
            continue
        s, e = s - start + len(prefix), e - start + len(prefix)
        if spans and s <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], e))
        else:
            spans.append((s, e))
    return prefix + window + suffix, spans


def _cut_start(text: str, start: int, limit: int) -> int:
    """Move a window start forward to the next word start, never past `limit`."""
    if start == 0 or text[start - 1].isspace():
        return start
    for i in range(start, limit):
        if text[i].isspace():
            return i + 1
    return limit


def _cut_end(text: str, end: int, limit: int) -> int:
    """Move a window end back to the previous word end, never before `limit`."""
    if end >= len(text) or text[end].isspace():
        return end
    for i in range(end - 1, limit - 1, -1):
        if text[i].isspace():
            return i
    # One long word: cut it at the hit's end rather than mid-word (or mid-word if no hit).
    return limit if limit > 0 else end


# --- styles ---------------------------------------------------------------------------------


def _escape_with(chars: str) -> Callable[[str], str]:
    pattern = re.compile("[" + re.escape(chars) + "]")
    return lambda s: pattern.sub(lambda m: "\\" + m.group(), s)


# Slack: \< and \> become entities; \[ \] become plain brackets; the rest keep their
# backslash, which Slack's mrkdwn reads as a literal. `&` is left to apprise (-> &amp;).
_escape_slack = _escape_with("\\<>[]*_~`")
# CommonMark: the characters that can start inline markup, plus @ (chat mentions).
_escape_markdown = _escape_with("\\`*_[]<>~&|@#!")


def _is_web(url: str | None) -> bool:
    return url is not None and url.lower().startswith(("http://", "https://"))


def _code_span(text: str) -> str:
    """An inline code span holding `text`: never a link, never markup."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_WHITESPACE_RUN = re.compile(r"\s+")


def _oneline(text: str) -> str:
    """Whitespace runs (CR/LF included) become one space; edges keep their space so that the
    pieces of a highlighted snippet join with their word gaps intact."""
    return _WHITESPACE_RUN.sub(" ", text)


class _Style:
    """Plain text; subclasses override the markup."""

    body_format = "text"
    separator = "\n\n"
    line_break = "\n"

    def esc(self, text: str) -> str:
        return text

    def bold(self, markup: str) -> str:
        return markup

    def highlight(self, markup: str) -> str:
        return f"*{markup}*"

    def label(self, name: str) -> str:
        return f"{name}:"

    def story_title(self, title: str, link: str | None) -> str:
        return self.esc(title)

    def link(self, url: str) -> str:
        # Plain text cannot make anything clickable or not; show it as published.
        return self.esc(_oneline(url))

    def paragraph(self, lines: Sequence[str]) -> str:
        return self.line_break.join(lines)

    def heading(self, text: str) -> str:
        return self.esc(text)

    def snippet(self, text: str, spans: Sequence[tuple[int, int]]) -> str:
        out: list[str] = []
        pos = 0
        for s, e in spans:
            out.append(self.esc(text[pos:s]))
            out.append(self.highlight(self.esc(text[s:e])))
            pos = e
        out.append(self.esc(text[pos:]))
        return "".join(out)


class _Markdown(_Style):
    body_format = "markdown"
    line_break = "  \n"  # a CommonMark hard line break

    def esc(self, text: str) -> str:
        return _escape_markdown(_oneline(text))

    def bold(self, markup: str) -> str:
        return f"**{markup}**"

    def highlight(self, markup: str) -> str:
        return f"**{markup}**"

    def label(self, name: str) -> str:
        return f"**{name}:**"

    def story_title(self, title: str, link: str | None) -> str:
        if link is not None and _is_web(link):
            return f"[{self.bold(self.esc(title))}](<{_angle_dest(link)}>)"
        return self.bold(self.esc(title))

    def link(self, url: str) -> str:
        url = _oneline(url)
        if _is_web(url):
            return f"<{_angle_dest(url)}>"
        return _code_span(url)

    def heading(self, text: str) -> str:
        return self.bold(self.esc(text))


class _Slack(_Markdown):
    line_break = "\n"  # apprise passes newlines through; Slack keeps them

    def esc(self, text: str) -> str:
        return _escape_slack(_oneline(text))

    def story_title(self, title: str, link: str | None) -> str:
        # Bold inside a Slack link label is not rendered; the link itself stands out.
        if link is not None and _is_web(link):
            return f"[{self.esc(title)}](<{_angle_dest(link)}>)"
        return self.bold(self.esc(title))

    def link(self, url: str) -> str:
        url = _oneline(url)
        if _is_web(url):
            return f"[{self.esc(url)}](<{_angle_dest(url)}>)"
        return _code_span(url)


class _Email(_Style):
    body_format = "html"
    separator = "\n<hr>\n"
    line_break = "<br>"  # no newline after it: apprise's text part would indent the next line

    def esc(self, text: str) -> str:
        return html.escape(_oneline(text), quote=True)

    def bold(self, markup: str) -> str:
        return f"<b>{markup}</b>"

    def highlight(self, markup: str) -> str:
        return f"<b>{markup}</b>"

    def label(self, name: str) -> str:
        return f"<b>{name}:</b>"

    def story_title(self, title: str, link: str | None) -> str:
        return f"<b>{self.esc(title)}</b>"

    def link(self, url: str) -> str:
        url = _oneline(url)
        if _is_web(url):
            # The URL is the visible text too, so the plain-text part keeps it.
            return f'<a href="{html.escape(url, quote=True)}">{self.esc(url)}</a>'
        return self.esc(url)

    def paragraph(self, lines: Sequence[str]) -> str:
        return "<p>" + self.line_break.join(lines) + "</p>"

    def heading(self, text: str) -> str:
        return f"<p><b>{self.esc(text)}</b></p>"


def _angle_dest(url: str) -> str:
    # Inside <...> a destination may not contain spaces, < or >; percent-encode them.
    return url.replace(" ", "%20").replace("<", "%3C").replace(">", "%3E")


_STYLES: Mapping[str, _Style] = {
    "slack": _Slack(),
    "markdown": _Markdown(),
    "email": _Email(),
    "text": _Style(),
    "console": _Style(),
}


# --- messages -------------------------------------------------------------------------------


def format_time(at: datetime | None, tz: tzinfo) -> str:
    """'2026-11-26 14:05 CET', or 'unknown' when the feed gave no date."""
    if at is None:
        return "unknown"
    local = at.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or local.strftime('%z')}".rstrip()


def _values(story: Story, style: _Style, tz: tzinfo) -> dict[str, str]:
    """Placeholder values, already escaped for the style."""
    text, spans = snippet(story.snippet_text, story.hits)
    return {
        "title": style.story_title(_oneline(story.title), story.link),
        "link": style.link(story.link) if story.link else "",
        "feed": style.esc(story.feed),
        "published": style.esc(format_time(story.published_at, tz)),
        "rules": ", ".join(style.esc(rule) for rule in story.rules),
        "snippet": style.snippet(text, spans),
    }


def _plain_values(story: Story, tz: tzinfo) -> dict[str, str]:
    """Placeholder values for a message title, which every channel shows as plain text."""
    text, _ = snippet(story.snippet_text, story.hits)
    return {
        "title": _oneline(story.title),
        "link": _oneline(story.link or ""),
        "feed": _oneline(story.feed),
        "published": format_time(story.published_at, tz),
        "rules": ", ".join(story.rules),
        "snippet": text,
    }


def _story_block(values: Mapping[str, str], style: _Style, *, with_title: bool) -> str:
    # Plain-text channels show the message title on its own line; no need to repeat it.
    lines = [values["title"]] if with_title else []
    lines += [
        f"{style.label('Rules')} {values['rules']}",
        f"{style.label('Feed')} {values['feed']} · {values['published']}",
    ]
    if values["link"]:
        lines.append(f"{style.label('Link')} {values['link']}")
    if values["snippet"]:
        lines.append(values["snippet"])
    return style.paragraph(lines)


def render(
    stories: Sequence[Story],
    *,
    style: str,
    tz: tzinfo,
    heading: str | None = None,
    title_template: str | None = None,
    body_template: str | None = None,
) -> Message:
    """One message for one or more stories, in the channel's markup.

    One story: the message title is the story title (or title_template). Several (digest,
    summary, quiet-hours release): the title is `heading` or "N stories" and every story is
    listed in full, none dropped. body_template, written in the channel's own markup, renders
    each story; title_template applies to single-story messages only.
    """
    if style not in _STYLES:
        raise ValueError(f"unknown message style {style!r}")
    if not stories:
        raise ValueError("a message needs at least one story")
    markup = _STYLES[style]

    blocks = []
    for story in stories:
        values = _values(story, markup, tz)
        if body_template is not None:
            blocks.append(string.Template(body_template).safe_substitute(values))
        else:
            with_title = len(stories) > 1 or markup.body_format != "text"
            blocks.append(_story_block(values, markup, with_title=with_title))
    body = markup.separator.join(blocks)

    if len(stories) == 1:
        if title_template is not None:
            title = string.Template(title_template).safe_substitute(_plain_values(stories[0], tz))
        else:
            title = stories[0].title
    else:
        title = heading if heading is not None else f"{len(stories)} stories"
        if markup.body_format != "text":  # plain-text channels show the title on its own
            body = markup.heading(title) + markup.separator + body
    return Message(title=_oneline(title), body=body, body_format=markup.body_format)


def template_problems(template: str) -> list[str]:
    """What is wrong with a title_template/body_template: unknown ${placeholders}, stray $."""
    problems = []
    allowed = ", ".join(f"${{{name}}}" for name in PLACEHOLDERS)
    for match in string.Template.pattern.finditer(template):
        name = match.group("named") or match.group("braced")
        if name is not None and name not in PLACEHOLDERS:
            problems.append(f"unknown placeholder ${{{name}}}; use {allowed}")
        elif match.group("invalid") is not None:
            column = match.start("invalid") + 1
            problems.append(f"a lone '$' at column {column}; write $$ for a dollar sign")
    return problems
