"""In-app notifications (issue 4): domain events become per-user notifications, stored, pushed
live on the user's channel, listed and marked read over REST.

- `rules`: which event notifies whom with what (pure; the table is in its docstring);
- `texts`: the Russian and English wording;
- `channels`: where a notification goes (`NotificationChannel`; in-app today, e-mail and push
  plug in with `register_channel`);
- `consumer`: the durable JetStream consumer that runs in every gateway process;
- `inbox`: listing and marking read for the REST routes;
- `events`: the user channel's events in the outbox."""

from __future__ import annotations

from sharehub.notifications.consumer import notification_consumer

__all__ = ["notification_consumer"]
