"""Password hashing parameters and policy."""

from __future__ import annotations

from sharehub.security.passwords import hash_password, password_problem, verify_password


def test_argon2id_with_owasp_parameters() -> None:
    encoded = hash_password("Лето в Сочи 2026!")
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password(encoded, "Лето в Сочи 2026!")
    assert not verify_password(encoded, "лето в сочи 2026!")


def test_unknown_account_never_verifies() -> None:
    assert not verify_password(None, "sharehub-dummy-password-for-timing")
    assert not verify_password("not-a-hash", "anything")


def test_unicode_is_normalised() -> None:
    # "ﬁ" (U+FB01) and "fi" are the same password after NFKC.
    assert verify_password(hash_password("ﬁnance-2026-x"), "finance-2026-x")


def test_policy_lengths_and_no_composition_rules() -> None:
    assert password_problem("a" * 7) == "password_too_short"
    assert password_problem("a" * 129) == "password_too_long"
    assert password_problem("correct horse battery staple") is None
    assert password_problem("всёхорошо") is None  # lowercase letters only is fine
    assert password_problem("x" * 128) is None


def test_common_and_personal_passwords_are_refused() -> None:
    for common in ("password1", "Qwerty123", "12345678", "1q2w3e4r", "йцукенгш", "gfhjkm123"):
        assert password_problem(common) == "password_too_common", common
    assert password_problem("ivan.petrov", email="ivan.petrov@mail.ru") == "password_matches_account"
    assert password_problem("Иван Петров", display_name="иван петров") == "password_matches_account"
