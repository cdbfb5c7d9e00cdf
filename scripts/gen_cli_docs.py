"""Generate docs/cli.md from the CLI's own --help (checked by tests/test_docs.py).

Run: .venv/bin/python scripts/gen_cli_docs.py   (writes docs/cli.md)
"""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

from hygie.cli.main import app

COMMANDS = [[], ["init"], ["migrate"], ["serve"], ["client", "add"], ["client", "list"],
            ["client", "revoke"], ["keys", "generate"], ["keys", "status"], ["keys", "rotate"],
            ["keys", "export"], ["keys", "export-recovery"], ["keys", "recover"],
            ["import"], ["export"], ["patient", "erase"], ["user", "add"], ["user", "list"],
            ["user", "disable"], ["user", "reset-mfa"], ["backup", "create"],
            ["backup", "verify"], ["backup", "prune"], ["backup", "drill"], ["restore"],
            ["check"]]
OUT = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def render() -> str:
    runner = CliRunner()
    parts = ["# Command-line reference\n",
             "Generated from `hygie ... --help` by `scripts/gen_cli_docs.py`; "
             "`tests/test_docs.py` fails when it is out of date.\n"]
    for cmd in COMMANDS:
        result = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "100", "NO_COLOR": "1",
                                                           "TERM": "dumb"},
                               prog_name="hygie")
        title = " ".join(["hygie", *cmd])
        lines = [ln.rstrip() for ln in result.output.splitlines()]
        body = "\n".join(ln for ln in lines if ln).strip("\n")
        parts.append(f"## `{title}`\n\n```text\n{body}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if OUT.read_text() == text else 1)
    OUT.write_text(text)
    print(f"wrote {OUT}")
