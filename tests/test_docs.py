"""Tests that keep the docs true: CLI reference, error codes, settings."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from hygie import errors
from hygie.crypto import KeySource

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _gen() -> object:
    spec = importlib.util.spec_from_file_location("gen_cli_docs",
                                                  ROOT / "scripts" / "gen_cli_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    expected = _gen().render()  # type: ignore[attr-defined]
    assert (DOCS / "cli.md").read_text() == expected, (
        "docs/cli.md is out of date: run .venv/bin/python scripts/gen_cli_docs.py")


def test_every_error_code_is_documented() -> None:
    api = (DOCS / "api.md").read_text()
    codes = {cls.code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.HygieError)
             and cls is not errors.HygieError}
    missing = sorted(c for c in codes if f"`{c}`" not in api)
    assert not missing, f"error codes missing from docs/api.md: {missing}"


def test_every_setting_is_documented() -> None:
    ops = (DOCS / "operations.md").read_text()
    from hygie.settings import render_config

    config = render_config(instance_id="x", database_url="y", key_source=KeySource("file", "z"))
    keys = re.findall(r"^(\w+) =", config, re.M)
    missing = [k for k in keys if k not in ops]
    assert not missing, f"settings missing from docs/operations.md: {missing}"
    for var in ("HYGIE_DATA_DIR", "HYGIE_DATABASE_URL", "HYGIE_KEY_SOURCE"):
        assert var in ops


def test_readme_quick_start_is_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
