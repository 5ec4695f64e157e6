"""One FastAPI application: the JSON API under /api, OpenAPI docs at /docs, the chat UI at mount_path.

One `Assistant` (model and index loaded once) serves every request; it notices a rebuilt index by
itself. Access control, the frame-ancestors policy and a body-size limit are small ASGI middlewares.
Run it with `rag serve` (or `python app.py`); `python -m rag.api hash-password` makes a password hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import sys
import threading
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import Response

from rag.errors import ConfigError, InputError, RagError
from rag.generators import available
from rag.pipeline import Assistant
from rag.response import answer_to_dict
from rag.retrieve import Filters
from rag.settings import Settings

MAX_QUESTION_BODY = 20_000  # hard cap on the raw field; the pipeline enforces settings.max_question_chars
MAX_BODY_BYTES = 1_000_000
PBKDF2_ITERATIONS = 600_000
ISO_DATE = r"^\d{4}(-\d{2}){0,2}$"
_PROTECTED = ("/api/", "/docs", "/redoc", "/openapi.json")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported anywhere


# -- request and response models -----------------------------------------------------------------


class FiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    date_from: str | None = Field(None, max_length=10, pattern=ISO_DATE, examples=["2017"])
    date_to: str | None = Field(None, max_length=10, pattern=ISO_DATE, examples=["2017-12-31"])
    doc_ids: list[str] = Field(default_factory=list, max_length=200)


class AskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., max_length=MAX_QUESTION_BODY, examples=["Vem är ny ekonomichef?"])
    k: int | None = Field(None, ge=1, le=100, description="passages to return (at least 10 are retrieved)")
    filters: FiltersIn | None = None
    generator: str | None = Field(None, max_length=64, description="a name from GET /api/health")


# -- the application -------------------------------------------------------------------------------


def create_app(settings: Settings | None = None, assistant: Assistant | None = None) -> FastAPI:
    """The whole app: API routes first, then the Gradio UI mounted at settings.mount_path."""
    settings = settings or Settings.from_env()
    assistant = assistant or Assistant(settings)
    users = load_users(settings)
    app = FastAPI(
        title="Frågor om kommundirektörens rapporter",
        version="1",
        description="Citerade svar ur Tyresö kommuns kommundirektörsrapporter.",
    )
    app.state.assistant, app.state.settings = assistant, settings
    _add_routes(app, assistant, settings)
    _add_gradio_js_route(app, settings.mount_path)
    _mount_ui(app, assistant, settings, users)
    _add_cors(app, settings.frame_ancestors)
    app.add_middleware(
        AccessMiddleware,
        sso_header=settings.sso_header,
        users=users,
        gradio_users=lambda: _gradio_sessions(app),
    )
    app.add_middleware(SecurityHeadersMiddleware, frame_ancestors=settings.frame_ancestors)
    return app


def _mount_ui(app: FastAPI, assistant: Assistant, settings: Settings, users: dict[str, str]) -> None:
    """The chat UI, queued; Gradio's own login page when there are users (SSO takes precedence)."""
    import gradio as gr

    from rag import ui

    def login(user: str, password: str) -> bool:
        return check_password(users, user, password)

    blocks = ui.build_ui(assistant, settings)
    blocks.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_limit)
    gr.mount_gradio_app(
        app,
        blocks,
        path=settings.mount_path,
        footer_links=[],
        run_history=False,
        auth=login if users and not settings.sso_header else None,
        auth_message="Logga in med ditt användarnamn och lösenord.",
        auth_dependency=_sso_user(settings.sso_header) if settings.sso_header else None,
        theme=gr.themes.Default(primary_hue="blue"),
        css=ui.CSS,
        head=ui.HEAD_JS,
        ssr_mode=False,
        show_error=True,
        enable_monitoring=False,
        mcp_server=False,
        pwa=False,
    )


def _add_routes(app: FastAPI, assistant: Assistant, settings: Settings) -> None:
    gate = threading.BoundedSemaphore(max(1, settings.concurrency_limit))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        detail = _validation_message(error, settings.max_question_chars)
        return JSONResponse({"detail": detail, "errors": _plain_errors(error)}, 422)

    @app.exception_handler(RagError)
    async def rag_error(request: Request, error: RagError):
        return JSONResponse({"detail": str(error), "error": type(error).__name__}, status_for(error))

    @app.post("/api/ask", tags=["api"], summary="Ställ en fråga; svaret citerar rapporterna")
    def ask(body: AskIn) -> dict:
        filters = _filters(body.filters, assistant)
        _check_generator(body.generator)
        with gate:
            answer = assistant.ask(body.question, k=body.k, filters=filters, generator=body.generator)
        return answer_to_dict(answer)

    @app.get("/api/documents", tags=["api"], summary="Rapporterna i indexet")
    def documents() -> list[dict]:
        return [
            {
                "id": doc_id,
                "title": d["title"],
                "date": d.get("date"),
                "diarienummer": d.get("diarienummer"),
                "sections": d.get("sections", []),
            }
            for doc_id, d in assistant.index.documents.items()
        ]

    @app.get("/api/health", tags=["api"], summary="Status, indexversion och modell")
    async def health():
        try:
            index = await run_in_threadpool(lambda: assistant.index)
        except RagError as error:
            return JSONResponse({"status": "unavailable", "detail": str(error)}, 503)
        return {
            "status": "ok",
            "index_version": index.version,
            "model": settings.model,
            "documents": len(index.documents),
            "chunks": len(index.chunks),
            "generator": settings.generator,
            "generators": sorted(available()),
        }


def status_for(error: RagError) -> int:
    """Bad input is the caller's to fix (422); anything else is ours: unavailable until fixed (503)."""
    return 422 if isinstance(error, InputError) else 503


def _filters(given: FiltersIn | None, assistant: Assistant) -> Filters | None:
    if given is None:
        return None
    unknown = sorted(set(given.doc_ids) - set(assistant.index.documents))
    if unknown:
        raise InputError(f"Okända rapport-id: {', '.join(unknown)[:300]}. Se GET /api/documents.")
    return Filters(given.date_from, given.date_to, tuple(given.doc_ids))


def _check_generator(name: str | None) -> None:
    if name is not None and name not in available():
        raise InputError(f"Okänd svarsmotor {name[:64]!r}. Välj en av: {', '.join(sorted(available()))}.")


def _validation_message(error: RequestValidationError, max_question_chars: int) -> str:
    """One readable line: 'Ogiltig förfrågan – k: Input should be a valid integer; ...'."""
    lines = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        if where == "question" and item.get("type") == "string_too_long":
            return (
                f"Frågan är för lång ({len(item.get('input') or '')} tecken); korta den till högst "
                f"{max_question_chars} tecken."
            )
        lines.append(f"{where}: {item.get('msg', 'invalid')}")
    return "Ogiltig förfrågan – " + "; ".join(lines)


def _plain_errors(error: RequestValidationError) -> list[dict]:
    """The pydantic errors without echoing the (possibly huge) input back."""
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
        for e in error.errors()[:20]
    ]


def _add_gradio_js_route(app: FastAPI, mount_path: str) -> None:
    """Serve a loader for Gradio's own <gradio-app> web component (from the installed package, no CDN)."""
    script = web_component_loader()

    @app.get(f"{mount_path.rstrip('/')}/gradio.js", include_in_schema=False)
    def gradio_js():
        return Response(script, media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})


def web_component_loader() -> str:
    """gradio.js with its stylesheet resolved next to the script rather than the host page.

    Gradio's bundle loads `./assets/index-*.css` relative to the embedding page (or the app's origin
    root), which misses an app served under a sub-path. The loader links the stylesheet itself, and
    leaves inert markers with the hrefs Gradio looks for so that it does not try the wrong address.
    """
    import gradio

    frontend = Path(gradio.__file__).parent / "templates" / "frontend"
    original = (frontend / "gradio.js").read_text()
    bundle = re.search(r'import\("\./(assets/index-[\w-]+\.js)"\)', original)
    sheet = re.search(r'href="\./(assets/index-[\w-]+\.css)"', (frontend / "index.html").read_text())
    if not bundle or not sheet:
        return original
    return LOADER.replace("@BUNDLE@", bundle.group(1)).replace("@CSS@", sheet.group(1))


LOADER = """// Gradio's <gradio-app> web component, served by this app (rag/api.py): nothing from a CDN.
const here = new URL("./", import.meta.url);
const css = "@CSS@";
for (const href of ["./" + css, new URL(css, here.origin + "/").href]) {
  const marker = document.createElement("link");
  marker.rel = "x-gradio-stylesheet";
  marker.setAttribute("href", href);
  document.head.appendChild(marker);
}
const sheet = document.createElement("link");
sheet.rel = "stylesheet";
sheet.href = new URL(css, here).href;
document.head.appendChild(sheet);
import(new URL("@BUNDLE@", here).href);
"""


def _add_cors(app: FastAPI, frame_ancestors: str) -> None:
    """Origins allowed to frame the app may also load it as a <gradio-app> web component."""
    origins = [o.rstrip("/") for o in frame_ancestors.split() if re.match(r"^https?://[^*]+$", o)]
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )


def _gradio_sessions(app: FastAPI) -> dict:
    """The logged-in sessions of the mounted Gradio app (cookie token -> user), for the API too."""
    for route in app.routes:
        tokens = getattr(getattr(route, "app", None), "tokens", None)
        if isinstance(tokens, dict):
            return tokens
    return {}


def _sso_user(header: str):
    def user(request: Request) -> str | None:
        return request.headers.get(header, "").strip() or None

    return user


# -- users and passwords ---------------------------------------------------------------------------


def load_users(settings: Settings, environ: dict | None = None) -> dict[str, str]:
    """user -> password or pbkdf2 hash, from settings.auth_file and/or RAG_USERS ("user:pw,user2:pw2")."""
    environ = os.environ if environ is None else environ
    lines: list[str] = []
    if settings.auth_file:
        path = Path(settings.auth_file)
        if not path.is_file():
            raise ConfigError(
                f"The auth file {path} does not exist (set RAG_AUTH_FILE to a file of user:password lines)."
            )
        lines += path.read_text(encoding="utf-8").splitlines()
    lines += re.split(r"[,\n]", environ.get("RAG_USERS", ""))
    users = {}
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        user, sep, secret = line.partition(":")
        if not sep or not user.strip() or not secret:
            raise ConfigError(
                "Each user must be written user:password or user:pbkdf2_sha256$... (see docs/embedding.md)."
            )
        users[user.strip()] = secret.strip()
    return users


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode()}"


def check_password(users: dict[str, str], user: str, password: str) -> bool:
    stored = users.get(user)
    if stored is None or password is None:
        hmac.compare_digest("x", "y")  # similar work whether or not the user exists
        return False
    if not stored.startswith("pbkdf2_sha256$"):
        return hmac.compare_digest(stored.encode(), password.encode())
    try:
        _, iterations, salt, expected = stored.split("$", 3)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(base64.b64encode(digest).decode(), expected)


# -- middleware ----------------------------------------------------------------------------------


class AccessMiddleware:
    """Trusted-header SSO (every request needs the header) or login (API needs Basic auth or a UI session)."""

    def __init__(self, app, sso_header: str | None, users: dict[str, str], gradio_users):
        self.app, self.sso_header, self.users, self.gradio_users = app, sso_header, users, gradio_users

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if self.sso_header and not headers.get(self.sso_header, "").strip():
            return await _refuse(scope, receive, send, "Inloggning krävs (saknar SSO-huvudet).")
        needs_login = not self.sso_header and self.users and _route_path(scope).startswith(_PROTECTED)
        if needs_login and not (self._basic_ok(headers) or self._session_ok(headers)):
            return await _refuse(scope, receive, send, "Inloggning krävs.", basic=True)
        return await self.app(scope, receive, send)

    def _basic_ok(self, headers: Headers) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
        except ValueError:
            return False
        return check_password(self.users, user, password)

    def _session_ok(self, headers: Headers) -> bool:
        cookies = [c.strip().partition("=") for c in headers.get("cookie", "").split(";")]
        tokens = self.gradio_users()
        return any(name.startswith("access-token") and value in tokens for name, _, value in cookies)


class SecurityHeadersMiddleware:
    """frame-ancestors (who may embed the app), nosniff, and a size limit on API request bodies."""

    def __init__(self, app, frame_ancestors: str):
        self.app = app
        self.headers = [
            (b"content-security-policy", f"frame-ancestors {frame_ancestors}".encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
        ]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length", "0")
        if _route_path(scope).startswith("/api/") and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            response = JSONResponse({"detail": f"För stor förfrågan (högst {MAX_BODY_BYTES} byte)."}, 413)
            return await self._with_headers(response)(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *(h for h in self.headers if h[0] not in names),
                ]
            await send(message)

        return await self.app(scope, receive, send_with_headers)

    def _with_headers(self, response: Response) -> Response:
        for name, value in self.headers:
            response.headers[name.decode()] = value.decode()
        return response


async def _refuse(scope, receive, send, message: str, basic: bool = False):
    if scope["type"] == "websocket":
        return await send({"type": "websocket.close", "code": 1008})
    headers = {"WWW-Authenticate": 'Basic realm="rapporter", charset="UTF-8"'} if basic else {}
    await JSONResponse({"detail": message}, 401, headers=headers)(scope, receive, send)


def _route_path(scope) -> str:
    """The request path without the root_path prefix uvicorn adds."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


# -- serving -------------------------------------------------------------------------------------


def serve(settings: Settings) -> int:
    """`rag serve`: load the model and index once, then serve UI and API until stopped."""
    import logging

    import uvicorn

    log = logging.getLogger("rag.api")
    assistant = Assistant(settings)
    try:
        log.warning("Index %s loaded.", assistant.warm_up())
    except RagError as error:  # serve anyway: /api/health and the UI say what is wrong
        log.warning("Not ready yet: %s", error)
    app = create_app(settings, assistant)
    print(
        f"Serverar på http://{settings.host}:{settings.port}{settings.root_path}{settings.mount_path}"
        f" (API-dokumentation: /docs)",
        flush=True,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        root_path=settings.root_path,
        proxy_headers=True,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    return 0


def _main(argv: list[str]) -> int:
    if argv[:1] == ["hash-password"]:
        import getpass

        password = argv[1] if len(argv) > 1 else getpass.getpass("Lösenord: ")
        print(hash_password(password))
        return 0
    print("Användning: python -m rag.api hash-password [LÖSENORD]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
