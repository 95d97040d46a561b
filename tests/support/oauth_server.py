"""A small OAuth 2 identity provider on loopback, for tests: token endpoint (refresh, device
code, authorization code with PKCE), device authorization and introspection (RFC 7662, as
Dovecot's oauth2 passdb asks it).

Access tokens live `lifetime` seconds; every refresh rotates the refresh token and the old one
is refused from then on (invalid_grant), as strict providers do. The test plays the user:
`approve()` a device code, `authorize()` a browser login; and the provider: `revoke()`,
`expire_access_tokens()`, `down` (answers 503).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import json
import secrets
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from daemon.oauth import OAuthClient
from tests.support.dovecot import free_ports

HOST = "127.0.0.1"


@dataclass
class _Grant:
    username: str
    scope: str


@dataclass
class _State:
    lifetime: float
    access: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> user, expiry
    refresh: dict[str, _Grant] = field(default_factory=dict)  # the live refresh tokens
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # device_code -> state
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)  # authorization codes
    refreshes: int = 0
    refused_refreshes: int = 0
    inactive_introspections: int = 0
    down: bool = False
    rotate: bool = True  # False: the refresh token stays the same, as Google's does


class OAuthServer:
    def __init__(self, username: str, *, lifetime: float = 5.0) -> None:
        self.username = username
        self.state = _State(lifetime)
        self.lock = threading.Lock()
        self._http = http.server.ThreadingHTTPServer((HOST, 0), _handler(self))
        self.url = f"http://{HOST}:{self._http.server_address[1]}"

    def __enter__(self) -> OAuthServer:
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    # -- what a test does -------------------------------------------------------------------

    def issue_refresh_token(self, scope: str = "mail") -> str:
        """A refresh token as a finished login would leave it."""
        token = "rt-" + secrets.token_urlsafe(16)
        with self.lock:
            self.state.refresh[token] = _Grant(self.username, scope)
        return token

    def live_refresh_tokens(self) -> set[str]:
        with self.lock:
            return set(self.state.refresh)

    def revoke(self) -> None:
        """Every refresh and access token stops working (the admin revoked the app)."""
        with self.lock:
            self.state.refresh.clear()
            self.state.access.clear()

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.state.access.clear()

    def pending_user_codes(self) -> list[str]:
        with self.lock:
            return [d["user_code"] for d in self.state.devices.values() if not d["approved"]]

    def approve(self, user_code: str) -> None:
        with self.lock:
            for device in self.state.devices.values():
                if device["user_code"] == user_code:
                    device["approved"] = True

    def authorize(self, url: str) -> str:
        """The user signs in at `url`: the redirect URL the browser is sent to, with a code."""
        query = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
                 .items()}
        code = "code-" + secrets.token_urlsafe(8)
        with self.lock:
            self.state.codes[code] = query
        back = {"code": code, "state": query.get("state", "")}
        return f"{query['redirect_uri']}?{urllib.parse.urlencode(back)}"

    # -- the endpoints ----------------------------------------------------------------------

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type")
        with self.lock:
            if grant == "refresh_token":
                return self._refresh(form)
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                return self._device_token(form)
            if grant == "authorization_code":
                return self._code_token(form)
        return 400, {"error": "unsupported_grant_type"}

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        old = form.get("refresh_token", "")
        grant = self.state.refresh.pop(old, None)
        if grant is None:
            self.state.refused_refreshes += 1
            return 400, {"error": "invalid_grant", "error_description": "token revoked"}
        self.state.refreshes += 1
        if self.state.rotate:
            return 200, self._tokens(grant)
        self.state.refresh[old] = grant
        return 200, {k: v for k, v in self._tokens(grant, refresh=False).items()
                     if k != "refresh_token"}

    def _device_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        device = self.state.devices.get(form.get("device_code", ""))
        if device is None:
            return 400, {"error": "expired_token"}
        if not device["approved"]:
            return 400, {"error": "authorization_pending"}
        del self.state.devices[form["device_code"]]
        return 200, self._tokens(_Grant(self.username, device["scope"]))

    def _code_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        asked = self.state.codes.pop(form.get("code", ""), None)
        if asked is None or asked.get("redirect_uri") != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant"}
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if asked.get("code_challenge") != challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE"}
        return 200, self._tokens(_Grant(self.username, asked.get("scope", "")))

    def _tokens(self, grant: _Grant, refresh: bool = True) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(16)
        new = "rt-" + secrets.token_urlsafe(16)
        self.state.access[access] = (grant.username, time.time() + self.state.lifetime)
        if refresh:
            self.state.refresh[new] = grant
        return {"access_token": access, "token_type": "Bearer", "refresh_token": new,
                "expires_in": self.state.lifetime, "scope": grant.scope}

    def device(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        code, user_code = secrets.token_urlsafe(16), secrets.token_hex(4).upper()
        with self.lock:
            self.state.devices[code] = {"user_code": user_code, "approved": False,
                                        "scope": form.get("scope", "")}
        return 200, {"device_code": code, "user_code": user_code,
                     "verification_uri": f"{self.url}/device", "expires_in": 60,
                     "interval": 1}

    def introspect(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            user, expiry = self.state.access.get(form.get("token", ""), ("", 0.0))
            if user and time.time() < expiry:
                return 200, {"active": True, "username": user}
            self.state.inactive_introspections += 1
        return 200, {"active": False}


def _handler(server: OAuthServer) -> type[http.server.BaseHTTPRequestHandler]:
    routes = {"/token": server.token, "/devicecode": server.device,
              "/introspect": server.introspect}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
            route = routes.get(urllib.parse.urlsplit(self.path).path)
            if server.state.down:
                status, answer = 503, {"error": "temporarily_unavailable"}
            elif route is None:
                status, answer = 404, {"error": "not_found"}
            else:
                status, answer = route(form)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def client_for(idp: OAuthServer, mailbox: str, username: str) -> OAuthClient:
    return OAuthClient(mailbox, username, "ticketd-test", None, f"{idp.url}/token",
                       f"{idp.url}/devicecode", f"{idp.url}/authorize", ("mail",), timeout=5)


class Clock:
    """Unix time that a test moves by hand; starts at the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class BearerSink:
    """Takes mail only after AUTH XOAUTH2 with a token the provider calls active."""

    def __init__(self, introspection_url: str) -> None:
        self.introspection_url = introspection_url
        self.tokens: list[str] = []  # accepted, in order
        self.refused = 0
        self.received: list[bytes] = []

    async def auth_XOAUTH2(self, server, args):  # noqa: ANN001, ANN201, N802 - aiosmtpd's name
        fields = base64.b64decode(args[1]).split(b"\x01")
        token = next(f[len(b"auth=Bearer "):] for f in fields if f.startswith(b"auth=Bearer "))
        answer = await asyncio.to_thread(self._introspect, token.decode())
        if answer.get("active"):
            self.tokens.append(token.decode())
            return AuthResult(success=True, auth_data=answer["username"])
        self.refused += 1
        return AuthResult(success=False, handled=False)

    def _introspect(self, token: str) -> dict:
        data = urllib.parse.urlencode({"token": token}).encode()
        with urllib.request.urlopen(self.introspection_url, data, timeout=5) as answer:
            return json.load(answer)

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        self.received.append(bytes(envelope.original_content))
        return "250 OK"


class BearerSmtp:
    """aiosmtpd on a free loopback port that requires XOAUTH2 (no TLS: loopback only)."""

    def __init__(self, introspection_url: str) -> None:
        self.sink = BearerSink(introspection_url)
        (self.port,) = free_ports(1)
        self._controller = Controller(self.sink, hostname=HOST, port=self.port,
                                      ready_timeout=5, auth_require_tls=False,
                                      auth_required=True)
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
