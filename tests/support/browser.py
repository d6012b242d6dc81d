"""A real browser for the page's tests: headless Chromium from Debian's package (run_tests.sh
installs it where it is missing), driven by Playwright from PyPI. Playwright's own browser
download is not reachable from the development machines, so it is pointed at /usr/bin/chromium.
Locally a missing browser skips those tests; in CI (CI=true) it fails them, as a missing
redis-server does.

`Watched` records what a page did that a test must see as a failure: console errors, uncaught
exceptions, Content-Security-Policy violations and requests to any other origin."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (tests may run as root, where Chromium's sandbox refuses to start), no GPU, and
# nothing the browser would fetch by itself (component updates, sync, first-run pages).
ARGUMENTS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--no-first-run", "--disable-sync"]

# Recorded in the page before any of its own scripts run (an init script is not subject to the
# page's policy): every violation of the policy, as the browser reports it to the page.
_CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def require_browser() -> Path:
    problem = None
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        problem = "chromium is not installed (./run_tests.sh installs Debian's package with apt-get)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (requirements-dev.txt)"
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {problem}")
        pytest.skip(problem)
    return CHROMIUM if CHROMIUM.exists() else Path(shutil.which("chromium"))


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(require_browser()), args=ARGUMENTS)


class Watched:
    """One page and everything it did: console errors, page errors, policy violations, requests."""

    def __init__(self, page, origin: str):
        self.page, self.origin = page, origin
        self.console: list[str] = []
        self.errors: list[str] = []
        self.requests = []
        page.add_init_script(_CSP_LISTENER)
        page.on("console", lambda message: message.type == "error" and self.console.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(request))

    def off_origin(self) -> list[str]:
        """Requests to anything but the server: blob: URLs are the page's own (same origin)."""
        ours = (self.origin + "/", f"blob:{self.origin}/")
        return [request.url for request in self.requests if not request.url.startswith(ours)]

    def check(self, expected_console: tuple[str, ...] = ()) -> None:
        """No console error but the `expected` ones (the browser logs every error status the API
        answers as "Failed to load resource"), no exception, no policy violation, no other origin."""
        console = [text for text in self.console if not any(part in text for part in expected_console)]
        violations = self.page.evaluate("window.__cspViolations")
        assert (console, self.errors, violations, self.off_origin()) == ([], [], [], [])
