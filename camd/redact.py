"""Keep secrets out of logs: URLs are shown with their credentials masked."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "***"


def mask_url(url: str) -> str:
    """rtsp://admin:hunter2@10.0.0.5/s1 -> rtsp://admin:***@10.0.0.5/s1 (user kept, password hidden)."""
    parts = urlsplit(url)
    if not parts.password and "@" not in parts.netloc:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:{MASK}@{host}" if user else f"{MASK}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
