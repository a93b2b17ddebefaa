"""`monitor test-rule`: run one rule (or a query) over stored articles and explain each match.

Reads the database only. Human output goes to stdout; counts, hints and progress to stderr, so
`--json` stdout is JSON Lines and nothing else.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta

import click

from monitor.config import Config
from monitor.errors import MonitorError
from monitor.render import snippet
from monitor.rules import FeedInfo, RuleSet, RuleSpec, parse
from monitor.store import Store, iso


def backtest(
    config: Config | None,
    store: Store,
    *,
    name: str | None,
    query: str | None,
    window: timedelta,
    feed: str | None,
    limit: int | None,
    as_json: bool,
    now: datetime,
) -> None:
    if name:
        if config is None or name not in config.rules:
            known = ", ".join(config.rules) if config else "(the config has problems)"
            raise MonitorError(f"no rule named {name!r}", hint=f"rules: {known}")
        rule = config.rules[name]
        spec = RuleSpec(name=name, query=rule.query, language=rule.language, exclude=rule.exclude)
    else:
        parse(query or "")  # an invalid query raises QueryError: exit 78 with a caret
        spec = RuleSpec(name="--query", query=query or "")
    ruleset = RuleSet([spec])
    feeds = config.feeds if config else {}
    if store.count_articles() == 0:
        click.echo(
            "no stored articles yet; run `monitor run --once` to fetch the feeds first", err=True
        )
        return
    states = store.feed_states()
    articles = list(store.articles_since(now - window, feed=feed, limit=limit))
    matched = 0
    with click.progressbar(articles, label="scanning", file=sys.stderr) as bar:
        for stored in bar:
            article = stored.article
            feed_config = feeds.get(article.feed)
            info = FeedInfo(
                name=article.feed,
                tags=feed_config.tags if feed_config else frozenset(),
                # as the daemon does: the config's language, else the one the feed declares
                language=(feed_config.language if feed_config else None)
                or (declared.language if (declared := states.get(article.feed)) else None),
            )
            found = ruleset.match(article, info)
            if not found:
                continue
            matched += 1
            hits = found[0].hits
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "feed": article.feed,
                            "title": article.title,
                            "link": article.link,
                            "published": iso(article.published_at),
                            "matches": [
                                {"term": h.term, "field": h.field, "start": h.start, "end": h.end}
                                for h in hits
                            ],
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                field = hits[0].field if hits else "text"
                source = article.title if field == "title" else article.text
                text, spans = snippet(source, [h for h in hits if h.field == field])
                click.echo(
                    f"{article.feed} | {iso(article.published_at) or 'undated'} | {article.title}"
                )
                if article.link:
                    click.echo(f"  {article.link}")
                click.echo(f"  {_highlight(text, spans)}\n")
    click.echo(f"matched {matched} of {len(articles)}", err=True)


def _highlight(text: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in spans:
        out.append(text[last:start] + click.style(text[start:end], bold=True, fg="yellow"))
        last = end
    return "".join(out) + text[last:]
