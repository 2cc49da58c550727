"""The API token: generated at the daemon's first start, kept in <state_dir>/api-token (0600).

Whoever can read that file (the daemon's user, root) may change state through the API; the CLI
reads it from there.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from camd.private import OWNER_FILE, open_private

log = logging.getLogger(__name__)

TOKEN_FILE = "api-token"


class TokenError(RuntimeError):
    """No readable token: says where it was looked for and what to do."""


def token_path(state_dir: Path) -> Path:
    return Path(state_dir) / TOKEN_FILE


def ensure_token(state_dir: Path) -> str:
    """The daemon's token, created with mode 0600 when absent. A token file readable by others
    is tightened to 0600 (with a warning) rather than trusted as is."""
    path = token_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        file = open_private(path, exclusive=True)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("api token %s was readable by others (mode %o); set to 0600", path, mode)
            os.chmod(path, OWNER_FILE)
        token = path.read_text().strip()
        if token:
            return token
        log.warning("api token %s was empty; writing a new one", path)
        file = open_private(path)
    token = secrets.token_urlsafe(32)
    with file:
        file.write((token + "\n").encode())
    log.info("api token written to %s (mode 0600)", path)
    return token


def read_token(state_dir: Path) -> str:
    """The token for a client (the CLI), or TokenError saying why it cannot be had."""
    path = token_path(state_dir)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise TokenError(
            f"no API token at {path}: start the daemon once (it writes the token), "
            "or point --state-dir at the daemon's state directory"
        ) from None
    except PermissionError:
        raise TokenError(
            f"cannot read the API token {path}: run this as the daemon's user or with sudo"
        ) from None
    if not token:
        raise TokenError(f"the API token file {path} is empty: restart the daemon to write a new one")
    return token
