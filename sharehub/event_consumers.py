"""Every domain-event consumer a gateway process runs (sharehub/consumers.py runs them)."""

from __future__ import annotations

from sharehub.chat_events import chat_consumer
from sharehub.consumers import Consumer
from sharehub.notifications import notification_consumer
from sharehub.platform import Platform


def all_consumers(platform: Platform) -> list[Consumer]:
    return [notification_consumer(platform), chat_consumer(platform)]
