"""Keep secrets out of logs: URLs are shown with their credentials masked."""

from __future__ import annotations

MASK = "***"


def mask_url(url: str) -> str:
    """rtsp://admin:hunter2@10.0.0.5/s1 -> rtsp://admin:***@10.0.0.5/s1; https://TOKEN@host -> https://***@host.

    Works on the raw text rather than urlsplit, so a password with an unencoded '/' or '@' is
    masked whole (the host is after the LAST '@', as FFmpeg and Python both read it).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host_and_path = rest.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    shown = f"{user}:{MASK}" if has_password and user else MASK
    return f"{scheme}://{shown}@{host_and_path}"
