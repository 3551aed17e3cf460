"""The ASGI application: FastAPI routes (routes_jobs.py, routes_api.py), the web page, errors as one line.

`create_app(service)` returns the app wrapped, outermost first, in the access log (accesslog.py), CORS
(only with `--cors ORIGIN`) and bearer auth (auth.py). Its lifespan starts the service (resuming jobs
on disk, starting the engine threads), runs the `--keep-results` sweep once a minute and stops the
engines at shutdown. Every error, FastAPI's own included, is `{"error": "one line"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from ..errors import VaryError
from .accesslog import AccessLog
from .auth import BearerAuth
from .http import error_body, status_for
from .service import Service

STATIC = Path(__file__).parent / "static"
# The page runs our module scripts only: no inline script, nothing from elsewhere (view.py's HTML too).
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
SWEEP_S = 60.0

log = logging.getLogger("vary.serve")


def create_app(service: Service):
    """The server's ASGI app over `service` (see the module docstring)."""
    from .routes_api import router as api_router
    from .routes_jobs import router as jobs_router

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(service.start)
        sweeper = asyncio.create_task(_sweep(service))
        try:
            yield
        finally:
            sweeper.cancel()
            await asyncio.to_thread(service.stop)

    app = FastAPI(title="vary serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.include_router(jobs_router)
    app.include_router(api_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_POLICY,
                                                            "Cache-Control": "no-cache"})

    @app.exception_handler(VaryError)
    async def library_error(request: Request, error: VaryError) -> JSONResponse:
        return JSONResponse(error_body(error), status_code=status_for(error), headers=getattr(error, "headers", None))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(error.detail)), status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body"))
        return JSONResponse(error_body(f"{where}: {first.get('msg', 'invalid value')}"), status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(f"internal error: {type(error).__name__}"), status_code=500)

    asgi = BearerAuth(app, service.config.token)
    if service.config.cors:
        from starlette.middleware.cors import CORSMiddleware

        asgi = CORSMiddleware(asgi, allow_origins=list(service.config.cors), allow_methods=["GET", "POST", "DELETE"],
                              allow_headers=["Authorization", "Content-Type", "Last-Event-ID"])
    return AccessLog(asgi)


async def _sweep(service: Service) -> None:
    while True:
        await asyncio.sleep(SWEEP_S)
        removed = await asyncio.to_thread(service.jobs.expire, service.config.keep_results)
        if removed:
            log.info("removed %d finished job(s) older than --keep-results", len(removed))
