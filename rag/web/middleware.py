"""ASGI middlewares, outermost first:

- `ForwardedHeadersMiddleware`: X-Forwarded-For/-Proto/-Host are believed only from the configured
  proxies; from anyone else they are dropped, so a client cannot choose the page's root URL.
- `SecurityHeadersMiddleware`: a CSP (frame-ancestors, object-src, base-uri), nosniff, referrer,
  permissions and opener policies, HSTS over https; CORS answers only for the
  configured origins, whatever the inner app (Gradio) adds; the login cookie SameSite=Lax unless a
  cross-origin embedding needs it.
- `RequestGuardMiddleware`: the Host allow-list, the body-size limit (counted while the body streams
  in, so a chunked body cannot skip it), a same-origin check on requests that change something, no
  uploads or other Gradio routes the UI does not use, and only known Gradio events.
- `AccessMiddleware`: trusted-header SSO or login (HTTP Basic or the UI's session) through `LoginGate`.
"""

from __future__ import annotations

import base64
import contextvars
import ipaddress
import json
from collections.abc import Callable

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from rag.web.auth import LoginGate

MAX_BODY_BYTES = 1_000_000
PROTECTED = ("/api/", "/docs", "/redoc", "/openapi.json")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"forwarded")
LOGIN_COOKIE = "access-token"
EVENT_CALLS = ("/gradio_api/queue/join", "/gradio_api/run/predict")
# Gradio routes (under /gradio_api/) for features the UI does not have: files and recordings in,
# media streams, a URL proxy, the vibe editor, dev reload, profiling, run history, custom components.
# Refused for everyone, logged in or not: each is code that only an attacker would reach.
UNUSED_GRADIO = ("upload", "process_recording", "component_server", "stream/", "proxy=", "vibe-",
                 "undo-vibe-edit", "dev/", "profiling/", "run-history/", "runs", "custom_component/")  # fmt: skip
NAMED_CALLS = ("run", "api", "call")  # /gradio_api/<these>/<api_name>: Gradio answered an unknown name with a 500
# The client address of the request being handled, for the UI's login form (Gradio calls the login
# function with the user name and password only).
CLIENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("rag_client", default=None)


class ForwardedHeadersMiddleware:
    """Like uvicorn's proxy_headers, but X-Forwarded-* from an untrusted peer are removed, not kept."""

    def __init__(self, app, trusted_proxies: str):
        self.app = app
        self.trusted = {_address(a) for a in trusted_proxies.split()}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        peer = (scope.get("client") or ("", 0))[0]
        headers = Headers(scope=scope)
        if _address(peer) in self.trusted:
            scope = dict(scope)
            proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto if scope["type"] == "http" else {"http": "ws", "https": "wss"}[proto]
            hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
            client = next((h for h in reversed(hops) if _address(h) not in self.trusted), None)
            if client:
                scope["client"] = (client, 0)
        else:
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() not in FORWARDED]}
        return await self.app(scope, receive, send)


# No script-src: Gradio's page runs inline scripts (its config, static/chat.js in the head) whose
# hashes change with each Gradio release and with our own files; without a browser test of the UI
# under a strict policy it would break the chat silently (docs/security.md).
PERMISSIONS_POLICY = b"camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=(), midi=()"
HSTS = b"max-age=31536000"  # a year; no includeSubDomains: other intranet hosts may still be plain http


class SecurityHeadersMiddleware:
    """Headers on every response, CORS limited to `cors_origins`, the login cookie's SameSite."""

    def __init__(self, app, frame_ancestors: str, cors_origins: list[str]):
        self.app = app
        self.cors_origins = set(cors_origins)
        policy = f"frame-ancestors {frame_ancestors}; object-src 'none'; base-uri 'self'"
        self.headers = [
            (b"content-security-policy", policy.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"permissions-policy", PERMISSIONS_POLICY),
            # Another window we open, or that opens us, gets no handle on this one (an iframe is unaffected).
            (b"cross-origin-opener-policy", b"same-origin"),
        ]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # https as the browser saw it: ForwardedHeadersMiddleware sets the scheme from a trusted proxy.
        https = scope.get("scheme") == "https"

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = self._rewrite(message.get("headers", []), https)
            await send(message)

        return await self.app(scope, receive, send_with_headers)

    def _rewrite(self, headers: list[tuple[bytes, bytes]], https: bool = False) -> list[tuple[bytes, bytes]]:
        allowed = next(
            (v.decode("latin-1") in self.cors_origins for k, v in headers if k.lower() == b"access-control-allow-origin"),
            False,
        )
        out = []
        for name, value in headers:
            lower = name.lower()
            if lower.startswith(b"access-control-") and not allowed:
                continue  # Gradio reflects any Origin on a non-localhost Host; only ours may read
            if lower == b"set-cookie" and value.startswith(LOGIN_COOKIE.encode()):
                value = self._same_site(value)
            out.append((name, value))
        names = {k.lower() for k, _ in out}
        if b"content-security-policy" in names:  # a page's own policy (the docs) gets frame-ancestors too
            out = [(k, v + b"; " + self.headers[0][1] if k.lower() == b"content-security-policy" else v) for k, v in out]
        extra = [(b"strict-transport-security", HSTS)] if https else []  # over plain http browsers ignore it
        return out + [h for h in [*self.headers, *extra] if h[0] not in names]

    def _same_site(self, cookie: bytes) -> bytes:
        """Lax keeps the login cookie off cross-site requests; None only when another origin embeds us,
        and then Secure too (browsers drop a SameSite=None cookie without it; Gradio's "unsecure"
        cookie had none). Embedding therefore needs HTTPS, which the proxy provides."""
        parts = [p for p in cookie.split(b";") if not p.strip().lower().startswith(b"samesite")]
        if not self.cors_origins:
            return b";".join([*parts, b" SameSite=lax"])
        if not any(p.strip().lower() == b"secure" for p in parts):
            parts.append(b" Secure")
        return b";".join([*parts, b" SameSite=none"])


class RequestGuardMiddleware:
    """Refuses, before the app sees them: a Host not allowed, a body over the limit, a request that
    changes something from a foreign origin, uploads, and Gradio events that do not exist."""

    def __init__(
        self,
        app,
        *,
        allowed_hosts: str,
        cors_origins: list[str],
        gradio_events: Callable[[], set],
        gradio_api_names: Callable[[], set] = set,
    ):
        self.app = app
        self.hosts = None if "*" in allowed_hosts.split() else {h.lower() for h in allowed_hosts.split()}
        self.cors_origins = set(cors_origins)
        self.gradio_events, self.gradio_api_names = gradio_events, gradio_api_names

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if self.hosts is not None and _host_name(headers.get("host", "")) not in self.hosts:
            return await _refuse(scope, receive, send, "Okänt värdnamn (Host).", 400)
        path = _route_path(scope)
        refusal = self._gradio_refusal(path) if "/gradio_api/" in path else None
        if refusal:  # whatever the method: GET /gradio_api/call/<name>/<id> and the dev routes too
            return await _refuse(scope, receive, send, *refusal)
        if scope["type"] == "websocket" or scope["method"] in SAFE_METHODS:
            return await self.app(scope, receive, send)
        if not self._same_origin(scope, headers):
            return await _refuse(scope, receive, send, "Förfrågan kommer från en annan webbplats.", 403)
        body = await _read_body(receive, MAX_BODY_BYTES)
        if body is None:
            return await _refuse(scope, receive, send, f"För stor förfrågan (högst {MAX_BODY_BYTES} byte).", 413)
        if "/gradio_api/" in path and not self._known_event(path, body):
            return await _refuse(scope, receive, send, "Okänd händelse (fn_index).", 422)
        return await self.app(scope, _replay(body, receive), send)

    def _gradio_refusal(self, path: str) -> tuple[str, int] | None:
        """(message, status) for a Gradio route the UI does not use, or a named call to no event of ours."""
        rest = path.split("/gradio_api/", 1)[1]
        if rest.rstrip("/") in ("upload", "upload_progress"):
            return "Uppladdning av filer stöds inte.", 403
        if rest.startswith(UNUSED_GRADIO):
            return "Den här funktionen finns inte i tjänsten.", 403
        parts = rest.strip("/").split("/")
        if parts[0] not in NAMED_CALLS or len(parts) < 2:
            return None
        name = parts[2] if parts[:2] == ["call", "v2"] and len(parts) > 2 else parts[1]
        if parts[:2] == ["run", "predict"] or name in self.gradio_api_names():
            return None  # run/predict names its event by fn_index (checked with the body)
        return "Okänd händelse (api_name).", 404

    def _same_origin(self, scope, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is None:
            return True  # not a browser's cross-site request (browsers send Origin on every POST)
        host = headers.get("x-forwarded-host", "").split(",")[0].strip() or headers.get("host", "")
        return origin in self.cors_origins or origin == f"{scope.get('scheme', 'http')}://{host}"

    def _known_event(self, path: str, body: bytes) -> bool:
        """An event call names an event of ours by fn_index; Gradio answered an unknown one with a 500."""
        must = path.endswith(EVENT_CALLS)
        try:
            parsed = json.loads(body) if must or b'"fn_index"' in body else {}
        except ValueError:
            return False
        if not isinstance(parsed, dict) or not (must or "fn_index" in parsed):
            return not must
        index = parsed.get("fn_index")
        return isinstance(index, int) and not isinstance(index, bool) and index in self.gradio_events()


class AccessMiddleware:
    """Trusted-header SSO (every request needs the header) or login (API needs Basic auth or a UI session)."""

    def __init__(
        self, app, sso_header: str | None, gate: LoginGate, gradio_users, protected: tuple[str, ...] = ()
    ):
        self.app, self.sso_header, self.gate, self.gradio_users = app, sso_header, gate, gradio_users
        self.protected = PROTECTED + tuple(protected)  # and the app's own pages behind the chat's login

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if self.sso_header and not headers.get(self.sso_header, "").strip():
            return await _refuse(scope, receive, send, "Inloggning krävs (saknar SSO-huvudet).", 401)
        client = (scope.get("client") or ("?", 0))[0]
        CLIENT.set(client)
        needs_login = not self.sso_header and self.gate.users and _route_path(scope).startswith(self.protected)
        if needs_login and not self._session_ok(headers):
            verdict = await self._basic(headers, client)
            if verdict is not None and verdict.locked_for_s:
                extra = {"Retry-After": str(verdict.locked_for_s)}
                return await _refuse(scope, receive, send, verdict.message(), 429, extra)
            if verdict is None or not verdict.ok:
                return await _refuse(scope, receive, send, "Inloggning krävs.", 401, _BASIC)
        return await self.app(scope, receive, send)

    async def _basic(self, headers: Headers, client: str):
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except ValueError:
            return None
        return await self.gate.check(user, password, client)

    def _session_ok(self, headers: Headers) -> bool:
        cookies = [c.strip().partition("=") for c in headers.get("cookie", "").split(";")]
        tokens = self.gradio_users()
        return any(name.startswith(LOGIN_COOKIE) and value in tokens for name, _, value in cookies)


_BASIC = {"WWW-Authenticate": 'Basic realm="rapporter", charset="UTF-8"'}


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes `limit` (Content-Length or not)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(scope, receive, send, message: str, status: int, headers: dict | None = None):
    if scope["type"] == "websocket":
        return await send({"type": "websocket.close", "code": 1008})
    await JSONResponse({"detail": message}, status, headers=headers)(scope, receive, send)


def _route_path(scope) -> str:
    """The request path without the root_path prefix uvicorn adds."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _address(value: str) -> str:
    """An IP address in one spelling (so '::ffff:127.0.0.1' and '127.0.0.1' match); else as given."""
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return value.strip()
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)
