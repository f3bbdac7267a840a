"""Hiding the secrets of URLs in messages and logs.

Below both :mod:`motia.state.urls` and the backends, which mask the URLs they name in errors.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
