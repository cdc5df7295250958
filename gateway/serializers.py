"""How users look on the wire: the owner sees everything about themselves, everyone else a public
profile without e-mail or phone."""

from __future__ import annotations

from typing import Any

from storage.users import UserRow


def user_public(user: UserRow) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "display_name": user.display_name,
        "bio": user.bio,
        "city": user.city,
        "is_owner": "owner" in user.roles,
        "created_at": user.created_at.isoformat(),
    }


def user_private(user: UserRow) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "email": user.email,
        "display_name": user.display_name,
        "phone": user.phone,
        "bio": user.bio,
        "city": user.city,
        "locale": user.locale,
        "roles": sorted(user.roles),
        "status": user.status,
        "created_at": user.created_at.isoformat(),
        "updated_at": user.updated_at.isoformat(),
    }
