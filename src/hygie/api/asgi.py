"""ASGI entry point for ``hygie serve`` (each worker builds its app from HYGIE_DATA_DIR)."""

from __future__ import annotations

from fastapi import FastAPI

from hygie.api.app import create_app
from hygie.settings import load_settings


def create_from_env() -> FastAPI:
    return create_app(load_settings(None))
