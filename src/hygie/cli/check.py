"""``hygie check``: the start-up integrity check, by hand or from monitoring."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from hygie.cli.main import DataDir, JsonOpt, boundary, emit_json, err, out

if TYPE_CHECKING:
    from hygie.resilience.integrity import IntegrityReport


def report_failure(report: IntegrityReport) -> None:
    """The first failure as the one error line, the others, then the restore steps; exit 3."""
    from hygie.resilience.integrity import EXIT_CODE, EXIT_UPGRADE, recovery_steps

    first, *others = report.failures
    upgrade = all(f.upgrade for f in report.failures)
    what = "this data dir needs an upgrade" if upgrade else "integrity check failed"
    err.print(f"hygie: error: {what}: {first.message}", markup=False,
              highlight=False, soft_wrap=True)
    for other in others:
        err.print(f"  also: {other.message}", markup=False, highlight=False, soft_wrap=True)
    for line in recovery_steps(report):
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_UPGRADE if upgrade else EXIT_CODE)


@boundary
def check_cmd(
    data_dir: DataDir = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Also re-hash every ledger entry and run SQLite's quick_check without "
        "a time limit (slower).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check the instance's integrity as 'hygie serve' does at start-up (exit 3 if damaged,
    4 if it only needs 'hygie migrate')."""
    from hygie.resilience.integrity import EXIT_CODE, EXIT_UPGRADE, check_instance

    report = check_instance(data_dir, full=full)
    if json_out:
        emit_json(report.as_dict())
        if not report.ok:
            upgrade = all(f.upgrade for f in report.failures)
            raise typer.Exit(EXIT_UPGRADE if upgrade else EXIT_CODE)
        return
    for c in report.checks:
        state = {True: "ok    ", False: "FAILED", None: "-     "}[c.ok]
        out.print(f"{state} {c.name:<10} {c.message}", markup=False, highlight=False,
                  soft_wrap=True)
    if not report.ok:
        report_failure(report)
    out.print(f"integrity check passed in {report.seconds:.2f} s", markup=False)
