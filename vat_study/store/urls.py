"""Database URLs: printing and storing them without their passwords."""

from __future__ import annotations

from sqlalchemy.engine import make_url


def safe_url(url: str) -> str:
    """The URL with any password replaced by ***, for printing and for storing in results."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  not a URL: nothing to hide
        return url


def mask_secrets(message: str, url: str) -> str:
    """``message`` with the password of ``url`` (if any) replaced by ***."""
    try:
        password = make_url(url).password
    except Exception:  # noqa: BLE001
        return message
    return message.replace(str(password), "***") if password else message
