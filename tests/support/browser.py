"""A real headless Chromium, driven through chromedriver's W3C WebDriver protocol (plain HTTP, httpx).

Debian's `chromium` and `chromium-driver` packages (the Makefile's system-deps) provide both; a test
skips when they are absent. Nothing is downloaded.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.support.service import free_port, wait_for


class Page:
    def __init__(self, http: httpx.Client, session: str) -> None:
        self._http, self._session = http, session

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        answer = self._http.post(f"/session/{self._session}{path}", json=body)
        answer.raise_for_status()
        return answer.json()["value"]

    def open(self, url: str) -> None:
        """Navigate and wait for the page's load event (images included)."""
        self._post("/url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """A JavaScript function body, run in the page; its `return` value."""
        return self._post("/execute/sync", {"script": script, "args": list(args)})


@contextmanager
def headless_chromium(browser: str, driver: str) -> Iterator[Page]:
    port = free_port()
    process = subprocess.Popen(
        [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    profile = tempfile.TemporaryDirectory(prefix="camd-chromium-")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as http:

            def ready() -> bool:
                try:
                    return bool(http.get("/status").json()["value"]["ready"])
                except (httpx.HTTPError, ValueError, KeyError):
                    return False

            wait_for(ready, "chromedriver to answer")
            flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--user-data-dir={profile.name}"]  # fmt: skip
            options = {"binary": browser, "args": flags}
            created = http.post("/session", json={"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:chromeOptions": options}}})  # fmt: skip
            created.raise_for_status()
            session = created.json()["value"]["sessionId"]
            try:
                yield Page(http, session)
            finally:
                http.delete(f"/session/{session}")
    finally:
        process.terminate()
        process.wait(timeout=10)
        profile.cleanup()
