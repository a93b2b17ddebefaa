"""I/O: feed-health and channel-health lines for `[monitor] ops_channel`.

Best effort and immediate, outside the outbox: a health line describes the moment, and the log
and `monitor status` keep the full picture, so a failed send is logged, not retried.
"""

from __future__ import annotations

import logging

from monitor import notify
from monitor.config import Config
from monitor.errors import DeliveryError
from monitor.render import Message

log = logging.getLogger("monitor.ops")


def tell(config: Config, text: str, *, skip: str | None = None) -> None:
    """Send one line to the ops channel, if one is set (and is not `skip`, the failing one)."""
    name = config.settings.ops_channel
    channel = config.channel(name) if name and name != skip else None
    if channel is None or not channel.enabled:
        return
    try:
        notify.send(channel.url, Message(title="monitor: health", body=text, body_format="text"))
    except DeliveryError as exc:
        log.warning("ops channel %s: %s", name, exc.message)
