"""Login for the dashboard: Panel's basic-auth pages, checking the password from the environment (plain or hashed,
in constant time) and rendered from local templates (Panel's own load their logo from a CDN; we are offline).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from panel.auth import BasicAuthProvider, BasicLoginHandler

TEMPLATES = Path(__file__).parent / "templates"


class PasswordAuthProvider(BasicAuthProvider):
    """Any user name with the shared password gets in; the name is kept as the analyst (default assignee)."""

    def __init__(self, check_password: Callable[[str], bool]):
        self._check_password = check_password  # before the base class, which builds the login handler
        super().__init__(
            login_template=str(TEMPLATES / "login.html"), logout_template=str(TEMPLATES / "logout.html")
        )

    @property
    def login_handler(self):
        check = self._check_password

        class PasswordLoginHandler(BasicLoginHandler):
            _login_endpoint = self._login_endpoint
            _login_template = self._login_template

            def _validate(self, username: str, password: str) -> bool:
                return bool(username.strip()) and check(password)

        return PasswordLoginHandler
