"""What the API needs at run time, built once from settings (see ``create_app``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from hygie.gate import Gate
from hygie.ledger.log import Ledger
from hygie.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    gate: Gate
    ledger: Ledger
