"""The ASGI application, built from settings: ``create_app(settings)``."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hygie import __version__, web
from hygie.api import audit, auth, errors, fhir, me, people, security
from hygie.api import ledger as ledger_routes
from hygie.api.middleware import HygieMiddleware
from hygie.api.state import Runtime
from hygie.crypto import Keyring
from hygie.crypto.secrets import warm_up as secrets_warm_up
from hygie.fhir.validation import warm_up
from hygie.runtime import open_runtime
from hygie.settings import Settings

log = logging.getLogger("hygie")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While the server runs: sign a ledger checkpoint every ``ledger_checkpoint_seconds``."""
    rt: Runtime = app.state.runtime
    period = rt.settings.ledger_checkpoint_seconds
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(period):
            try:
                rt.ledger.checkpoint()
            except Exception as exc:  # noqa: BLE001 - keep checkpointing; say what failed
                log.error("ledger checkpoint failed (%s)", type(exc).__name__)

    thread = threading.Thread(target=loop, name="hygie-checkpoint", daemon=True)
    if period > 0:
        thread.start()
    try:
        yield
    finally:
        stop.set()


def create_app(settings: Settings, *, keyring: Keyring | None = None) -> FastAPI:
    runtime = open_runtime(settings, keyring)
    warm_up()  # load the FHIR models now, not on the first request
    secrets_warm_up()  # the unknown-user dummy hash, before the first sign-in
    app = FastAPI(title="Hygie", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json", lifespan=lifespan)
    app.state.runtime = runtime
    errors.install(app)
    app.include_router(auth.router)
    app.include_router(people.public)
    app.include_router(people.router)
    app.include_router(fhir.public)
    app.include_router(audit.router)  # before the generic /fhir/{type} routes
    app.include_router(fhir.router)
    app.include_router(security.router)
    app.include_router(ledger_routes.router)
    app.include_router(me.router)
    app.add_middleware(HygieMiddleware, max_body=settings.max_body_bytes)
    web.install(app)  # pages at / and /app, static files, web security headers (outermost)
    return app
