"""Who an account operation names in the ledger: the administrator signed in to the web app
(kind ``user``, role ``admin``), the operator's CLI (kind ``system``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import Instance
from .people import People, make_people
from .test_accounts import cli
from .test_web import csrf_of, web_sign_in


@pytest.fixture
def people(instance: Instance) -> Iterator[People]:
    p = make_people(instance)
    yield p
    p.close()


def test_web_admin_actions_name_the_admin_in_the_ledger(people: People) -> None:
    admin = people.person("adm.ledger", "admin")
    web_sign_in(people, admin)
    c = people.client
    page = c.get("/app/admin/accounts")
    added = c.post("/app/admin/accounts", data={"username": "sec.ledger", "role": "secretary",
                                                "csrf_token": csrf_of(page.text)})
    assert added.status_code == 200
    target = people.user_id("sec.ledger")
    reset = c.post("/app/admin/accounts/sec.ledger/reset-mfa",
                   data={"csrf_token": csrf_of(added.text)})
    assert reset.status_code == 200
    disabled = c.post("/app/admin/accounts/sec.ledger/disable",
                      data={"csrf_token": csrf_of(reset.text)}, follow_redirects=False)
    assert disabled.status_code == 303
    rows = people.audit(rid=target)
    assert [(r.action, r.actor, r.actor_kind, r.actor_role) for r in rows] == [
        (action, f"user:{admin.user_id}", "user", "admin")
        for action in ("user-add", "user-reset-mfa", "user-disable")]


def test_cli_account_actions_stay_system(people: People, instance: Instance) -> None:
    assert cli(instance, "user", "add", "sec.cli", "--role", "secretary").exit_code == 0
    assert cli(instance, "user", "disable", "sec.cli").exit_code == 0
    rows = people.audit(rid=people.user_id("sec.cli"))
    assert [(r.action, r.actor, r.actor_kind, r.actor_role) for r in rows] == [
        ("user-add", "cli:user", "system", None), ("user-disable", "cli:user", "system", None)]
