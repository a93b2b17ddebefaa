"""monitor.notify against real local receivers: SMTP (aiosmtpd), an HTTP webhook, Slack
redirected to the webhook. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor import notify
from monitor.errors import DeliveryError
from monitor.models import Hit
from monitor.render import Story, render
from tests.support.sinks import SLACKCAPTURE_DIR, SmtpSink, WebhookSink, slack_redirect

BERLIN = ZoneInfo("Europe/Berlin")
SLACK_URL = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"
SLACK_SECRETS = ("T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7")
TITLE = "Mega-Deal: IBM übernimmt Red Hat <!here> <@U123> <script>x</script>"


def make_story(title: str = TITLE) -> Story:
    start = title.index("Red Hat")
    return Story(
        title=title,
        link="https://www.heise.de/newsticker/meldung/IBM-Red-Hat-4204786.html",
        feed="heise",
        published_at=datetime(2018, 10, 28, 21, 37, tzinfo=UTC),
        rules=("red-hat deal", "ibm"),
        snippet_text=title,
        hits=(Hit(term="red hat", field="title", start=start, end=start + 7),),
    )


def test_email_is_multipart_with_text_and_html_naming_every_rule() -> None:
    with SmtpSink() as smtp:
        url = smtp.mailto_url(to="desk@example.org")
        assert notify.validate(url) is None and notify.style_for(url) == "email"
        notify.send(url, render([make_story()], style="email", tz=BERLIN))
        [mail] = smtp.wait_for(1)
    assert mail.get_content_type() == "multipart/alternative"
    assert mail["To"] == "desk@example.org"
    assert mail["Subject"] == TITLE
    plain = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert plain is not None and html is not None
    text_part, html_part = plain.get_content(), html.get_content()
    for part in (text_part, html_part):
        assert "red-hat deal" in part and "ibm" in part and "heise" in part
        assert "2018-10-28 22:37 CET" in part
        assert "https://www.heise.de/newsticker/meldung/IBM-Red-Hat-4204786.html" in part
    assert "<script>" not in html_part and "&lt;script&gt;" in html_part
    assert "<b>Red Hat</b>" in html_part
    assert "<!here>" in text_part  # the plain part shows the title as published


def test_json_webhook_receives_the_post() -> None:
    with WebhookSink() as hook:
        url = hook.json_url()
        notify.send(url, render([make_story()], style=notify.style_for(url), tz=BERLIN))
        [post] = hook.wait_for(1)
    assert post["title"] == TITLE
    assert "red-hat deal, ibm" in post["message"]
    assert "*Red Hat*" in post["message"]


def test_slack_payload_has_escaped_mentions_a_link_and_bold() -> None:
    with WebhookSink() as hook, slack_redirect(hook.url):
        assert notify.style_for(SLACK_URL) == "slack"
        notify.send(SLACK_URL, render([make_story()], style="slack", tz=BERLIN))
        [payload] = hook.wait_for(1)
        assert hook.paths == ["/services/" + "/".join(SLACK_SECRETS)]
    attachment = payload["attachments"][0]
    text, title = attachment["text"], attachment["title"]
    for raw in ("<!here>", "<@U123>", "<script>"):
        assert raw not in text and raw not in title
    assert "&lt;!here&gt;" in text and "&lt;@U123&gt;" in text and "&lt;!here&gt;" in title
    assert "<https://www.heise.de/newsticker/meldung/IBM-Red-Hat-4204786.html|" in text
    assert "*Red Hat*" in text and "red-hat deal, ibm" in text


def test_slack_digest_lists_every_story() -> None:
    stories = [make_story(f"Story {i} about Red Hat <!channel>") for i in range(30)]
    with WebhookSink() as hook, slack_redirect(hook.url):
        notify.send(SLACK_URL, render(stories, style="slack", tz=BERLIN))
        payloads = hook.wait_for(1)
    text = "".join(p["attachments"][0]["text"] for p in payloads)
    assert all(f"Story {i} about" in text for i in range(30))
    assert "<!channel>" not in text


@pytest.mark.parametrize("status", [500, 403, 404])
def test_refusing_endpoint_raises_delivery_error_without_secrets(status: int) -> None:
    with WebhookSink() as hook:
        hook.fail_with(status)
        url = f"json://robot:hunter2secret@{hook.host}:{hook.port}/hook/tok3nXYZ?token=abc123456"
        with pytest.raises(DeliveryError) as caught:
            notify.send(url, render([make_story()], style="text", tz=BERLIN))
        assert hook.refused == 1 and hook.posts == []
    error = caught.value
    said = f"{error.message} {error.hint}"
    assert f"HTTP {status}" in said
    for secret in ("hunter2secret", "robot", "tok3nXYZ", "abc123456", url):
        assert secret not in said


def test_refusing_slack_raises_delivery_error_without_the_token() -> None:
    with WebhookSink() as hook, slack_redirect(hook.url):
        hook.fail_with(500)
        with pytest.raises(DeliveryError) as caught:
            notify.send(SLACK_URL, render([make_story()], style="slack", tz=BERLIN))
    said = f"{caught.value.message} {caught.value.hint}"
    assert "HTTP 500" in said and "slack" in said
    assert not any(secret in said for secret in SLACK_SECRETS)


def test_unreachable_smtp_server_raises_delivery_error_without_the_password() -> None:
    with SmtpSink() as smtp:
        port = smtp.port
    url = f"mailto://mailer:pa55w0rdXYZ@127.0.0.1:{port}?from=a@example.org&to=b@example.org"
    with pytest.raises(DeliveryError) as caught:
        notify.send(url, render([make_story()], style="email", tz=BERLIN))
    said = f"{caught.value.message} {caught.value.hint}"
    assert "mailto" in said and "pa55w0rdXYZ" not in said and "mailer" not in said


def test_delivery_recovers_when_the_endpoint_does() -> None:
    with WebhookSink() as hook:
        hook.fail_with(503)
        with pytest.raises(DeliveryError):
            notify.send(hook.json_url(), render([make_story()], style="text", tz=BERLIN))
        hook.fail_with(None)
        notify.send(hook.json_url(), render([make_story()], style="text", tz=BERLIN))
        assert len(hook.wait_for(1)) == 1


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("slack://T1JJ3T3L2/not a valid token!!/zzSECRETzz", "zzSECRETzz"),
        ("slack://onlyonesecrettoken", "onlyonesecrettoken"),
        ("nosuchservice://user:hunter2secret@host/path", "hunter2secret"),
        ("hunter2secret-without-scheme", "hunter2secret"),
        ("mailto://user:hunter2secret@", "hunter2secret"),
        ("json://user:hunter2secret@/", "hunter2secret"),
    ],
)
def test_validate_rejects_bad_urls_without_naming_secrets(url: str, secret: str) -> None:
    problem = notify.validate(url)
    assert problem is not None
    assert secret not in problem and url not in problem


def test_validate_accepts_console_and_good_urls() -> None:
    assert notify.validate(notify.CONSOLE) is None
    assert notify.validate(SLACK_URL) is None
    assert notify.validate("json://127.0.0.1:9/hook") is None


def test_console_prints_readably(capsys: pytest.CaptureFixture[str]) -> None:
    notify.send(notify.CONSOLE, render([make_story()], style="console", tz=BERLIN))
    out = capsys.readouterr().out
    assert TITLE in out and "red-hat deal, ibm" in out and "*Red Hat*" in out


def test_slackcapture_sitecustomize_redirects_a_subprocess(tmp_path: Path) -> None:
    script = tmp_path / "send.py"
    script.write_text(
        "import apprise\n"
        f"ok = apprise.Apprise.instantiate({SLACK_URL!r}).notify(body='hi', title='t')\n"
        "raise SystemExit(0 if ok else 1)\n"
    )
    with WebhookSink() as hook:
        env = dict(os.environ, PYTHONPATH=str(SLACKCAPTURE_DIR), MONITOR_TEST_SLACK_URL=hook.url)
        done = subprocess.run([sys.executable, str(script)], env=env, timeout=60, check=False)
        assert done.returncode == 0
        [payload] = hook.wait_for(1)
    assert payload["attachments"][0]["text"] == "hi"
