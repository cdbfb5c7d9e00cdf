"""Password rules for people's accounts (NIST SP 800-63B: length and a blocklist, no
composition rules).

A password is refused when it is shorter than 12 characters, longer than 1024, made of fewer
than 4 distinct characters, equal to or containing the username, or found (in lower case) in
the bundled list of the 30,000 most common breached passwords (``data/common-passwords.txt``,
see ``data/PROVENANCE.md``). Refusal messages never contain the password.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from hygie.errors import WeakPassword

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 would take more; refusing is clearer than truncating
MIN_DISTINCT = 4


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files("hygie.access").joinpath("data/common-passwords.txt").read_text(
        encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line)


def check_password(password: str, *, username: str) -> None:
    """Raise :class:`WeakPassword` when ``password`` breaks a rule."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"the password is too short: use at least {MIN_LENGTH} characters "
                           "(a few unrelated words make a good one)")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"the password is too long: at most {MAX_LENGTH} characters")
    if len(set(password)) < MIN_DISTINCT:
        raise WeakPassword("the password repeats too few characters; choose another")
    lowered = password.lower()
    if username and username.lower() in lowered:
        raise WeakPassword("the password must not contain the username")
    if lowered in common_passwords():
        raise WeakPassword("this password is among the most common breached passwords; "
                           "choose another")
