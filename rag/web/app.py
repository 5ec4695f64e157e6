"""One FastAPI application: the JSON API under /api (routes.py), OpenAPI docs at /docs and /redoc
(Swagger UI and ReDoc served from the fastapi-offline package, never a CDN), the accessibility
statement, the chat UI at mount_path (ui/). One `Assistant` (model and index loaded once) serves
every request; it notices a rebuilt index by itself. Run it with `rag serve` (or `python app.py`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, Response

from rag.errors import RagError
from rag.pipeline import Assistant
from rag.settings import Settings
from rag.web.auth import LoginGate, load_users
from rag.web.feedback import FeedbackLog, open_feedback_log
from rag.web.middleware import (
    CLIENT,
    AccessMiddleware,
    ForwardedHeadersMiddleware,
    RequestGuardMiddleware,
    SecurityHeadersMiddleware,
)
from rag.web.report_pages import add_report_pages
from rag.web.reports import REPORTS_PATH
from rag.web.routes import add_routes
from rag.web.statement import statement_page

STATIC = Path(__file__).parent / "static"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported anywhere


def create_app(
    settings: Settings | None = None,
    assistant: Assistant | None = None,
    feedback_log: FeedbackLog | None = None,
) -> FastAPI:
    """The whole app: API routes first, then the Gradio UI mounted at settings.mount_path."""
    settings = settings or Settings.from_env()
    assistant = assistant or Assistant(settings)
    gate = LoginGate(load_users(settings))
    origins = cors_origins(settings.frame_ancestors)
    app = FastAPI(
        title="Frågor om kommundirektörens rapporter",
        version="1",
        description="Citerade svar ur Tyresö kommuns kommundirektörsrapporter.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.assistant, app.state.settings = assistant, settings
    add_routes(app, assistant, settings)
    _add_docs(app)
    _add_statement(app, settings)
    add_report_pages(app, assistant, settings.mount_path)
    _add_gradio_js_route(app, settings.mount_path)
    blocks = _mount_ui(app, assistant, settings, gate, feedback_log or open_feedback_log(settings))
    _add_cors(app, origins)
    # add_middleware wraps: the last added runs first (forwarded headers, then headers, guard, access).
    app.add_middleware(
        AccessMiddleware,
        sso_header=settings.sso_header,
        gate=gate,
        gradio_users=lambda: _gradio_sessions(app),
        # the reports are the chat's content: the same login as the chat (the statement stays public)
        protected=(f"{settings.mount_path.rstrip('/')}/{REPORTS_PATH}",),
    )
    app.add_middleware(
        RequestGuardMiddleware,
        allowed_hosts=settings.allowed_hosts,
        cors_origins=origins,
        gradio_events=lambda: set(blocks.fns),
        gradio_api_names=lambda: {fn.api_name for fn in blocks.fns.values() if fn.api_name},
    )
    app.add_middleware(SecurityHeadersMiddleware, frame_ancestors=settings.frame_ancestors, cors_origins=origins)
    app.add_middleware(ForwardedHeadersMiddleware, trusted_proxies=settings.trusted_proxies)
    return app


def _mount_ui(app: FastAPI, assistant: Assistant, settings: Settings, gate: LoginGate, feedback_log: FeedbackLog):
    """The chat UI, queued; Gradio's own login page when there are users (SSO takes precedence)."""
    import gradio as gr

    from rag.web import ui

    async def login(user: str, password: str) -> bool:
        verdict = await gate.check(user, password, CLIENT.get())
        if verdict.locked_for_s:
            raise HTTPException(429, verdict.message(), headers={"Retry-After": str(verdict.locked_for_s)})
        return verdict.ok

    blocks = ui.build_ui(assistant, settings, feedback_log)
    blocks.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_limit)
    gr.mount_gradio_app(
        app,
        blocks,
        path=settings.mount_path,
        footer_links=[],
        run_history=False,
        auth=login if gate.users and not settings.sso_header else None,
        auth_message="Logga in med ditt användarnamn och lösenord.",
        auth_dependency=_sso_user(settings.sso_header) if settings.sso_header else None,
        theme=gr.themes.Default(primary_hue="blue"),
        css=(STATIC / "ui.css").read_text(),
        head=page_head(),
        ssr_mode=False,
        show_error=True,
        enable_monitoring=False,
        mcp_server=False,
        pwa=False,
        i18n=ui.swedish(),
    )
    return blocks


def page_head() -> str:
    """static/head.html, the print view (static/print.css) and the chat's script (static/chat.js), for the
    page's <head>."""
    script = (STATIC / "chat.js").read_text(encoding="utf-8")
    printing = (STATIC / "print.css").read_text(encoding="utf-8")
    return (
        (STATIC / "head.html").read_text(encoding="utf-8")
        + f"<style>\n{printing}</style>\n<script>\n{script}</script>\n"
    )


# The docs pages may load only from the app: ReDoc's bundle links its logo from cdn.redoc.ly, and the
# browser must not even try. (Workers from blob: for ReDoc's search; inline code for both pages.)
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; font-src 'self'; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'"
)


def _add_docs(app: FastAPI) -> None:
    """/docs and /redoc with their scripts and styles from the fastapi-offline package (no CDN, no web fonts)."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    # ReDoc's bundle shows Redocly's logo from their CDN; an image that fails to load is hidden by it.
    redoc_js = (assets / "redoc.standalone.js").read_text(encoding="utf-8")
    redoc_js = redoc_js.replace('"https://cdn.redoc.ly/redoc/logo-mini.svg"', '"data:,"')

    @app.get("/docs-assets/redoc.standalone.js", include_in_schema=False)
    def redoc_bundle() -> Response:
        return Response(redoc_js, media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})

    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{app.title} – API",
            swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs-assets/favicon.png",
        )
        page.headers["content-security-policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_redoc_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{app.title} – API",
            redoc_js_url=f"{root}/docs-assets/redoc.standalone.js",
            redoc_favicon_url=f"{root}/docs-assets/favicon.png",
            with_google_fonts=False,
        )
        page.headers["content-security-policy"] = DOCS_CSP
        return page


def _add_statement(app: FastAPI, settings: Settings) -> None:
    """Tillgänglighetsredogörelsen (the accessibility statement DOS-lagen asks for), linked from the footer,
    with the site's contact details and dates (statement.py)."""
    page = statement_page(settings)

    @app.get(f"{settings.mount_path.rstrip('/')}/tillganglighet", include_in_schema=False)
    def statement() -> HTMLResponse:
        return HTMLResponse(page)


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
    return (STATIC / "gradio-loader.js").read_text().replace("@BUNDLE@", bundle.group(1)).replace("@CSS@", sheet.group(1))


def cors_origins(frame_ancestors: str) -> list[str]:
    """Origins allowed to frame the app may also load it as a <gradio-app> web component; no others."""
    return [o.rstrip("/") for o in frame_ancestors.split() if re.match(r"^https?://[^*]+$", o)]


def _add_cors(app: FastAPI, origins: list[str]) -> None:
    """Starlette's CORS with exactly `origins` (maybe none). Added always: Gradio then leaves CORS to it
    instead of reflecting any Origin with credentials when the Host is not localhost."""
    from fastapi.middleware.cors import CORSMiddleware

    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=True,
        allow_methods=["GET", "POST"],
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


def serve(settings: Settings) -> int:
    """`rag serve`: load the model and index once, then serve UI and API until stopped."""
    import logging

    import uvicorn

    log = logging.getLogger("rag.web")
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
        proxy_headers=False,  # ForwardedHeadersMiddleware: only from settings.trusted_proxies
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    return 0
