"""What a notification says, in Russian and English.

The text is rendered when the notification is made and stored in its `data.text`, so every
client (and, later, e-mail and push) shows the same words without a copy of these templates;
`data` also carries the ids and fields a client needs to render its own text instead. A type with
variants (who cancelled, whose rental is overdue) has one template per variant; `""` is the
fallback."""

from __future__ import annotations

from collections.abc import Mapping

# type -> variant -> (ru, en). `{title}` is the listing's title.
TEMPLATES: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "rental_requested": {"": ("Новый запрос на аренду «{title}»", "New rental request for “{title}”")},
    "rental_booked": {"": ("Новое бронирование «{title}»", "New booking of “{title}”")},
    "rental_accepted": {"": ("Владелец подтвердил аренду «{title}»", "The owner accepted your request for “{title}”")},
    "rental_declined": {"": ("Владелец отклонил запрос на аренду «{title}»",
                             "The owner declined your request for “{title}”")},
    "rental_expired": {"": ("Владелец не ответил на запрос «{title}» вовремя, запрос истёк",
                            "Your request for “{title}” expired without an answer")},
    "rental_cancelled": {
        "renter": ("Арендатор отменил аренду «{title}»", "The renter cancelled the rental of “{title}”"),
        "owner": ("Владелец отменил аренду «{title}»", "The owner cancelled the rental of “{title}”"),
        "moderator": ("Модератор отменил аренду «{title}»", "A moderator cancelled the rental of “{title}”"),
        "": ("Аренда «{title}» отменена", "The rental of “{title}” was cancelled"),
    },
    "rental_started": {"": ("Арендатор получил «{title}»: аренда началась",
                            "The renter received “{title}”: the rental has started")},
    "rental_overdue": {
        "renter": ("Срок аренды «{title}» вышел: пора вернуть вещь владельцу",
                   "The rental of “{title}” is over: please return it to the owner"),
        "owner": ("Арендатор ещё не вернул «{title}», хотя срок вышел",
                  "“{title}” has not been returned on time"),
        "": ("Аренда «{title}» просрочена", "The rental of “{title}” is overdue"),
    },
    "rental_returned": {"": ("Владелец подтвердил возврат «{title}»", "The owner confirmed the return of “{title}”")},
    "extension_requested": {"": ("Арендатор просит продлить аренду «{title}»",
                                 "The renter asks to extend the rental of “{title}”")},
    "extension_accepted": {"": ("Владелец продлил аренду «{title}»", "The owner extended the rental of “{title}”")},
    "extension_declined": {"": ("Владелец отклонил продление аренды «{title}»",
                                "The owner declined to extend the rental of “{title}”")},
    "listing_approved": {"": ("Объявление «{title}» опубликовано", "Your listing “{title}” is published")},
    "listing_rejected": {"": ("Объявление «{title}» отклонено модератором",
                              "Your listing “{title}” was rejected by a moderator")},
    "listing_revision_approved": {"": ("Изменения в объявлении «{title}» опубликованы",
                                       "Your changes to “{title}” are published")},
    "listing_revision_rejected": {"": ("Изменения в объявлении «{title}» отклонены модератором",
                                       "Your changes to “{title}” were rejected by a moderator")},
    "message_received": {"": ("Новое сообщение по объявлению «{title}»", "New message about “{title}”")},
}

NOTIFICATION_TYPES: tuple[str, ...] = tuple(TEMPLATES)


def render(notification_type: str, *, title: str, variant: str = "") -> dict[str, str]:
    """{"ru": …, "en": …} for a notification type (and variant) about the listing `title`."""
    variants = TEMPLATES[notification_type]
    ru, en = variants.get(variant) or variants[""]
    # str.replace, not str.format: a title may contain braces.
    return {"ru": ru.replace("{title}", title), "en": en.replace("{title}", title)}
