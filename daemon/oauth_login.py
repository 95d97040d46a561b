"""Logging a mailbox in once, with a person: the grants that give the first refresh token.

Microsoft: the device code flow (RFC 8628); the person enters a short code on any browser.
Google: its device flow does not allow the mail scope, so the installed-app flow (RFC 8252):
a browser signs in and is sent back to a listener on 127.0.0.1, the code bound to this
process by PKCE.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from daemon.oauth import DEVICE_GRANT, OAuthClient, OAuthProblem, problem_of, record_of
from storage.tokens import TokenRecord


def device_login(client: OAuthClient, show: Callable[[str], None], *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> TokenRecord:
    """RFC 8628: show the user a code to enter at the provider's page, poll until approved."""
    if not client.device_url:
        raise OAuthProblem("this provider has no device flow for mail: use --browser",
                           permanent=True)
    with client.session() as session:
        try:
            answer = session.post(client.device_url, data={
                "client_id": client.client_id, "scope": " ".join(client.scopes)},
                withhold_token=True).json()
        except (requests.RequestException, ValueError) as exc:
            raise problem_of(exc, "device authorization failed") from None
        if "device_code" not in answer:
            raise OAuthProblem(f"device authorization refused: {answer.get('error', answer)}",
                               permanent=True)
        uri = answer.get("verification_uri") or answer.get("verification_url", "")
        show(answer.get("message") or f"Open {uri} and enter the code {answer['user_code']}")
        return _poll(client, session, answer, sleep, clock)


def _poll(client: OAuthClient, session: OAuth2Session, answer: dict[str, Any],
          sleep: Callable[[float], None], clock: Callable[[], float]) -> TokenRecord:
    interval = float(answer.get("interval", 5))
    deadline = clock() + float(answer.get("expires_in", 900))
    while clock() < deadline:
        sleep(interval)
        try:
            token = session.fetch_token(client.token_url, grant_type=DEVICE_GRANT,
                                        device_code=answer["device_code"],
                                        client_id=client.client_id)
        except OAuthError as exc:
            if exc.error == "authorization_pending":
                continue
            if exc.error == "slow_down":
                interval += 5
                continue
            raise problem_of(exc, "login failed") from None
        return record_of(token, "", clock())
    raise OAuthProblem("the code expired before it was entered", permanent=True)


def browser_login(client: OAuthClient, show: Callable[[str], None], *, port: int = 0,
                  timeout: float = 600, clock: Callable[[], float] = time.time) -> TokenRecord:
    """The installed-app flow (RFC 8252): a browser signs in and is sent back to a listener
    on 127.0.0.1 with the code; PKCE binds the code to this process."""
    with _Redirect(port) as redirect:
        verifier = generate_token(64)
        with client.session(redirect_uri=redirect.uri, code_challenge_method="S256") as session:
            url, state = session.create_authorization_url(
                client.auth_url, code_verifier=verifier,
                access_type="offline", prompt="consent")  # Google: give a refresh token
            show(url)
            query = redirect.wait(timeout)
            if query.get("state") != state or "code" not in query:
                raise OAuthProblem(f"login refused: {query.get('error', 'state mismatch')}",
                                   permanent=True)
            try:
                token = session.fetch_token(client.token_url, code=query["code"],
                                            code_verifier=verifier,
                                            grant_type="authorization_code")
            except (OAuthError, requests.RequestException, ValueError) as exc:
                raise problem_of(exc, "login failed") from None
    return record_of(token, "", clock())


class _Redirect:
    """A one-shot HTTP listener on loopback for the provider's redirect."""

    def __init__(self, port: int) -> None:
        self.query: dict[str, str] = {}
        self._got = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if "code" in query or "error" in query:
                    outer.query = {k: v[0] for k, v in query.items()}
                    outer._got.set()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.end_headers()
                self.wfile.write(b"ticketd: you may close this window.\n")

            def log_message(self, *args: Any) -> None:  # the query holds the code
                pass

        self._server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        self.uri = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> _Redirect:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, timeout: float) -> dict[str, str]:
        if not self._got.wait(timeout):
            raise OAuthProblem("no answer from the browser in time", permanent=True)
        return self.query
