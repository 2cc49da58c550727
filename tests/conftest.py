"""Fixtures live in tests/support/, one module per real component they start."""

pytest_plugins = [
    "tests.support.broker",
    "tests.support.media",
    "tests.support.models",
    "tests.support.rtsp",
]
