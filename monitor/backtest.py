"""`monitor test-rule`: run one rule (or a query) over stored articles and explain each match.

Reads the database only. Human output goes to stdout; counts, hints and progress to stderr, so
`--json` stdout is JSON Lines and nothing else. A named rule is tried exactly as the daemon runs
it: its own feeds only, each feed's language as the daemon resolves it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import click

from monitor.config import Config
from monitor.errors import ConfigUnusable, MonitorError
from monitor.models import Hit
from monitor.render import snippet
from monitor.rules import FeedInfo, RuleSet, RuleSpec, parse
from monitor.store import Store, StoredArticle, iso

MAX_JSON_MATCHES = 100  # per article: a broad /regex/ must not produce megabyte lines


def backtest(config: Config | None, store: Store, *, name: str | None, query: str | None,
             window: timedelta, feed: str | None, limit: int | None, as_json: bool,
             now: datetime) -> None:
    spec, feeds = _rule(config, name, query)
    ruleset = RuleSet([spec])
    if store.count_articles() == 0:
        click.echo("no stored articles yet; run `monitor run --once` to fetch the feeds first",
                   err=True)
        return
    if feed and config and feed not in config.feeds:
        click.echo(f"warning: no feed named {feed!r} in the config", err=True)
    states = store.feed_states()
    articles = [a for a in store.articles_since(now - window, feed=feed, limit=limit)
                if feeds is None or a.article.feed in feeds]
    found: list[tuple[StoredArticle, tuple[Hit, ...]]] = []
    with click.progressbar(articles, label="scanning", file=sys.stderr) as bar:
        for stored in bar:
            feed_config = config.feeds.get(stored.article.feed) if config else None
            state = states.get(stored.article.feed)
            info = FeedInfo(
                name=stored.article.feed,
                tags=feed_config.tags if feed_config else frozenset(),
                # as the daemon does: the config's language, else the one the feed declares
                language=(feed_config.language if feed_config else None)
                or (state.language if state else None),
            )
            if matches := ruleset.match(stored.article, info):
                found.append((stored, matches[0].hits))
    # Printed after the bar, so results never share its line.
    for stored, hits in found:
        click.echo(_json_line(stored, hits) if as_json else _human(stored, hits))
    click.echo(f"matched {len(found)} of {len(articles)}", err=True)


def _rule(config: Config | None, name: str | None,
          query: str | None) -> tuple[RuleSpec, frozenset[str] | None]:
    """The rule to try and the feeds it watches (None: every stored feed)."""
    if name is None:
        parse(query or "")  # an invalid query raises QueryError: exit 78 with a caret
        return RuleSpec(name="--query", query=query or ""), None
    if config is None:
        raise ConfigUnusable("the config has problems (listed above), so rules cannot be read",
                             hint="fix them, or try the query itself with --query")
    rule = config.rules.get(name)
    if rule is None:
        raise MonitorError(f"no rule named {name!r}", hint=f"rules: {', '.join(config.rules)}")
    spec = RuleSpec(name=name, query=rule.query, language=rule.language, exclude=rule.exclude)
    return spec, config.rule_feeds(rule)


def _json_line(stored: StoredArticle, hits: Sequence[Hit]) -> str:
    article = stored.article
    return json.dumps({
        "feed": article.feed, "title": article.title, "link": article.link,
        "published": iso(article.published_at),
        "matches": [{"term": h.term, "field": h.field, "start": h.start, "end": h.end}
                    for h in hits[:MAX_JSON_MATCHES]],
    }, ensure_ascii=False)


def _human(stored: StoredArticle, hits: Sequence[Hit]) -> str:
    article = stored.article
    field = hits[0].field if hits else "text"
    source = article.title if field == "title" else article.text
    text, spans = snippet(source, [h for h in hits if h.field == field])
    lines = [f"{article.feed} | {iso(article.published_at) or 'undated'} | {article.title}"]
    if article.link:
        lines.append(f"  {article.link}")
    lines.append(f"  {''.join(_highlighted(text, spans))}\n")
    return "\n".join(lines)


def _highlighted(text: str, spans: list[tuple[int, int]]) -> Iterator[str]:
    """Matched words in bold yellow on a terminal, between ** markers in a pipe or file."""
    tty = sys.stdout.isatty()
    last = 0
    for start, end in spans:
        yield text[last:start]
        word = text[start:end]
        yield click.style(word, bold=True, fg="yellow") if tty else f"**{word}**"
        last = end
    yield text[last:]
