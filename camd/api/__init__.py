"""The local control API: health, Prometheus metrics and the people calls, for the CLI and local tools."""

from camd.api.app import ControlApi, create_app
from camd.api.auth import TokenError, ensure_token, read_token
from camd.api.client import ApiClient, ApiError, ApiUnavailable
from camd.api.identity import IdentityBackend
from camd.api.server import ApiServer, ApiStartError

__all__ = [
    "ApiClient",
    "ApiError",
    "ApiServer",
    "ApiStartError",
    "ApiUnavailable",
    "ControlApi",
    "IdentityBackend",
    "TokenError",
    "create_app",
    "ensure_token",
    "read_token",
]
