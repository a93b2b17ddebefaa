"""End to end through the real CLI: real feeds over HTTP, real channels (json://, mailto://, slack://)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.feeds import Item, rss_feeds, with_items
from tests.support.feedserver import FeedServer
from tests.support.sinks import SmtpSink, WebhookSink

SLACK_URL = "slack://T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"

RULES = {
    "nato-membership": {"query": '"NATO membership"', "channels": ["hook", "mail", "team"]},
    "ceasefire": {"query": "ceasefire", "channels": ["hook", "mail", "team"]},
    "peacekeepers": {"query": "peacekeep*", "channels": ["hook"]},
}

BOTH = Item(title="Zelensky says NATO membership and a ceasefire must come together",
            link="https://news.example.org/world/zelensky-nato-ceasefire",
            description="Kyiv wants security guarantees before any truce, the president said.")
PEACE = Item(title="European peacekeepers could deploy after a cease-fire, officials say",
             link="https://news.example.org/world/peacekeepers",
             description="A reassurance force of several thousand troops is being discussed.")
DONATO = Item(title="Donato Carrisi's new thriller tops the Italian charts",
              link="https://news.example.org/culture/donato", description="A crime novel.")
PLAIN = Item(title="Stock markets close higher on tech earnings",
             link="https://news.example.org/markets/close", description="Shares rose.")


def rules_line(text: str) -> str:
    """The rule names a message lists after its "Rules:" label, in any channel's markup."""
    match = re.search(r"Rules:\W*([^\\<*\n]+)", text)
    assert match, text
    return match.group(1).strip()


def serve_all(server: FeedServer, files: list[Path]) -> dict[str, dict[str, str]]:
    feeds = {}
    for index, file in enumerate(files):
        server.put(f"/feed{index}.xml", file.read_bytes())
        feeds[f"feed{index}"] = {"url": server.url(f"/feed{index}.xml")}
    return feeds


def test_baseline_then_one_message_per_story_per_channel_then_conditional_quiet(
        feed_server: FeedServer, webhook: WebhookSink, smtp: SmtpSink, slack: WebhookSink,
        make_cli) -> None:
    files = rss_feeds(12)
    assert len(files) == 12
    feeds = serve_all(feed_server, files)
    cli = make_cli(
        feeds=feeds, rules=RULES,
        channels={"hook": {"url": webhook.json_url()}, "mail": {"url": smtp.mailto_url()},
                  "team": {"url": SLACK_URL}})

    first = cli("run", "--once")
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert (webhook.posts, smtp.messages, slack.posts) == ([], [], [])

    # New stories appear in several feeds; BOTH is run by two outlets, once with a tracker.
    syndicated = Item(title=BOTH.title, link=BOTH.link + "?utm_source=rss&utm_medium=feed",
                      description=BOTH.description)
    feed_server.put("/feed0.xml", with_items(files[0].read_bytes(), [BOTH, DONATO]))
    feed_server.put("/feed5.xml", with_items(files[5].read_bytes(), [syndicated]))
    feed_server.put("/feed7.xml", with_items(files[7].read_bytes(), [PEACE, PLAIN]))

    second = cli("run", "--once")
    assert second.returncode == 0, second.stderr
    hook_posts = webhook.wait_for(2)
    mails = smtp.wait_for(2)
    slack_posts = slack.wait_for(2)
    assert len(hook_posts) == 2 and len(mails) == 2 and len(slack_posts) == 2

    by_title = {p["title"]: p["message"] for p in hook_posts}
    assert set(by_title) == {BOTH.title, PEACE.title}
    assert "nato-membership" in by_title[BOTH.title] and "ceasefire" in by_title[BOTH.title]
    assert "peacekeepers" not in by_title[BOTH.title]
    assert "peacekeepers" in by_title[PEACE.title] and "ceasefire" in by_title[PEACE.title]
    assert "Donato" not in json.dumps(hook_posts) and "Stock markets" not in json.dumps(hook_posts)

    subjects = sorted(m["Subject"] for m in mails)
    assert subjects == sorted([BOTH.title, PEACE.title])
    for mail in mails:
        kinds = {part.get_content_type() for part in mail.walk()}
        assert {"text/plain", "text/html"} <= kinds
    slack_rules = sorted(rules_line(json.dumps(p)) for p in slack_posts)
    assert slack_rules == ["ceasefire", "ceasefire, nato-membership"] or \
        slack_rules == ["ceasefire", "nato-membership, ceasefire"]

    before = len(feed_server.requests)
    third = cli("run", "--once")
    assert third.returncode == 0, third.stderr
    assert (len(webhook.posts), len(smtp.messages), len(slack.posts)) == (2, 2, 2)
    third_requests = feed_server.requests[before:]
    assert len(third_requests) == 12
    assert all("if-none-match" in r.headers for r in third_requests)

    status = cli.status_json()
    assert {row["state"] for row in status.values()} == {"ok"}
    assert status["feed0"]["entries"] > 2


def test_channel_outage_delays_alerts_and_delivers_each_once(
        feed_server: FeedServer, webhook: WebhookSink, make_cli) -> None:
    files = rss_feeds(2)
    feeds = serve_all(feed_server, files)
    cli = make_cli(feeds=feeds, channels={"hook": {"url": webhook.json_url()}},
                   rules={"ceasefire": {"query": "ceasefire", "channels": ["hook"]}})
    assert cli("run", "--once").returncode == 0
    feed_server.put("/feed0.xml", with_items(files[0].read_bytes(), [BOTH]))
    feed_server.put("/feed1.xml", with_items(files[1].read_bytes(), [PEACE]))

    webhook.fail_with(500)
    failed = cli("run", "--once")
    assert failed.returncode == 0
    assert "HTTP 500" in failed.stderr and "hook" in failed.stderr
    queued = [json.loads(line) for line in cli("alerts", "--json").stdout.splitlines()]
    assert [a["status"] for a in queued] == ["queued", "queued"]
    assert all(a["last_error"] for a in queued if a["attempts"])

    webhook.fail_with(None)
    recovered = cli("run", "--once")
    assert recovered.returncode == 0, recovered.stderr
    assert sorted(p["title"] for p in webhook.wait_for(2)) == sorted([BOTH.title, PEACE.title])
    assert cli("run", "--once").returncode == 0
    assert len(webhook.posts) == 2
    sent = [json.loads(line) for line in cli("alerts", "--json").stdout.splitlines()]
    assert [a["status"] for a in sent] == ["sent", "sent"]


def test_malformed_documents_dead_feeds_never_crash_and_status_names_reasons(
        feed_server: FeedServer, make_cli) -> None:
    from tests.feeds import DATA

    documents = sorted(p for p in (DATA / "malformed").iterdir() if p.suffix != ".tsv")
    feeds = {}
    for index, file in enumerate(documents):
        feed_server.put(f"/m{index}", file.read_bytes(), content_type="application/xml")
        feeds[f"m{index}"] = {"url": feed_server.url(f"/m{index}")}
    feed_server.fault("/gone404", "status", code=404, reason="Not Found")
    feeds["missing"] = {"url": feed_server.url("/gone404")}
    feeds["refused"] = {"url": "http://127.0.0.1:9/feed.xml"}
    cli = make_cli(feeds=feeds, rules={"any": {"query": "news", "channels": ["console"]}})

    result = cli("run", "--once")
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
    status = cli.status_json()
    assert len(status) == len(documents) + 2
    assert status["missing"]["state"] == "failing"
    assert status["missing"]["last_error"] == "HTTP 404 Not Found"
    assert "refused" in status["refused"]["last_error"]
    for row in status.values():
        assert row["state"] in ("ok", "failing")
        if row["state"] == "failing":
            assert row["last_error"] and len(row["last_error"]) > 10
            assert row["next_poll_at"]
    human = cli("status")
    assert human.returncode == 0
    assert any(line.startswith("missing") and "HTTP 404 Not Found" in line
               for line in human.stdout.splitlines())


def test_check_lists_every_problem_with_key_paths(make_cli, tmp_path: Path) -> None:
    cli = make_cli(
        monitor={"interval": "15 minutes", "colour": "blue"},
        feeds={"world": {"url": "https://example.org/rss", "intervall": "5m"},
               "nourl": {"tags": ["x"]}},
        channels={"bad": {"url": "notascheme://what"},
                  "secret": {"url": "json://user:hunter2@127.0.0.1:1/x", "max_per_hour": 0}},
        rules={"truce": {"query": "ceasefire AND (Ukraine", "channels": ["nowhere"]},
               "near": {"query": "a NEAR/ b", "channels": ["console"], "feeds": ["tag:none"]}},
    )
    result = cli("check")
    assert result.returncode == 78
    err = result.stderr
    for path in ("monitor.interval:", "monitor.colour:", "feeds.world.intervall:", "feeds.nourl:",
                 "channels.bad.url:", "channels.secret.max_per_hour:", "rules.truce.query:",
                 "rules.truce.channels:", "rules.near.query:", "rules.near.feeds:"):
        assert any(line.startswith(path) for line in err.splitlines()), (path, err)
    assert "nowhere" in err
    assert "hunter2" not in err and "hunter2" not in result.stdout
    assert "Traceback" not in err


def test_check_ok_and_example_config_is_valid(make_cli) -> None:
    from tests.conftest import ROOT

    cli = make_cli(feeds={"w": {"url": "https://example.org/rss"}},
                   rules={"r": {"query": "ceasefire", "channels": ["console"]}})
    ok = cli("check")
    assert ok.returncode == 0, ok.stderr
    assert "1 feeds" in ok.stdout and "1 rules" in ok.stdout
    cli.config = ROOT / "config.example.toml"
    example = cli("check")
    assert example.returncode == 0, example.stderr


def test_feed_text_never_makes_a_live_slack_mention_or_email_markup(
        feed_server: FeedServer, smtp: SmtpSink, slack: WebhookSink, make_cli) -> None:
    files = rss_feeds(1)
    feeds = serve_all(feed_server, files)
    cli = make_cli(feeds=feeds, channels={"team": {"url": SLACK_URL}, "mail": {"url": smtp.mailto_url()}},
                   rules={"ceasefire": {"query": "ceasefire", "channels": ["team", "mail"]}})
    assert cli("run", "--once").returncode == 0
    # Double-escaped in the XML, so the entry's plain text really contains these characters.
    hostile = Item(title="Ceasefire &lt;!here&gt; &lt;!channel&gt; &lt;@U024BE7LH&gt; &lt;script&gt;x()&lt;/script&gt;",
                   link="https://news.example.org/hostile",
                   description="ceasefire &lt;b onclick=evil()&gt;now&lt;/b&gt; &lt;!everyone&gt;")
    feed_server.put("/feed0.xml", with_items(files[0].read_bytes(), [hostile]))
    assert cli("run", "--once").returncode == 0
    payload = json.dumps(slack.wait_for(1))
    for live in ("<!here>", "<!channel>", "<!everyone>", "<@U024BE7LH>"):
        assert live not in payload
    assert "here" in payload  # the words are shown, only inert
    [mail] = smtp.wait_for(1)
    html_part = next(p for p in mail.walk() if p.get_content_type() == "text/html")
    html = html_part.get_content()
    assert "<script>" not in html and "<b onclick" not in html
    assert "&lt;script&gt;" in html
