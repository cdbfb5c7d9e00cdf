"""The patient's own page: who accessed my record, when, how and why (issue 4, item 6).

- ``GET /app/access-history``: for a signed-in patient, every access to their record by someone
  else — when (Europe/Paris), who (the professional's name and role), what kind of access,
  the outcome (refusals included) and the reason stated for an emergency (break-glass) access.

Adapters only: the gate's ``Door.access_history`` decides (only the patient whose record it
is), reads the ledger's audit rows and writes its own audit entry for this consultation.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from hygie.api.deps import runtime
from hygie.errors import Forbidden
from hygie.web import auth
from hygie.web.account import moment
from hygie.web.pages import N_, Signed
from hygie.web.templating import ROLE_LABELS, render, translate

router = APIRouter(include_in_schema=False)
SHOWN = 500  # the most recent accesses listed on the page

ACTIONS = {
    "read": N_("Consultation"), "vread": N_("Consultation d'une version"),
    "search": N_("Recherche"), "everything": N_("Consultation du dossier complet"),
    "history": N_("Consultation de l'historique"), "create": N_("Ajout"),
    "update": N_("Modification"), "delete": N_("Suppression"),
    "break-glass": N_("Accès d'urgence"), "export": N_("Export"),
    "erase": N_("Effacement"), "import": N_("Import"),
}
OUTCOMES = {"success": N_("autorisé"), "denied": N_("refusé"), "error": N_("échec")}
ROLES = {**ROLE_LABELS, "api-client": N_("Logiciel connecté"),
         "system": N_("Hygie (opération technique)")}


def _row(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    action = item["action"]
    return {
        "when": moment(item["at"], request),
        "who": item["who"] if item["who"] != "?" else translate(request, N_("compte supprimé")),
        "role": translate(request, ROLES.get(item["role"] or "", N_("Inconnu"))),
        "what": translate(request, ACTIONS.get(action, N_("Autre accès"))),
        "outcome": item["outcome"],
        "outcome_label": translate(request, OUTCOMES.get(item["outcome"], N_("inconnu"))),
        "emergency": action == "break-glass",
        "reason": item["break_glass_reason"],
    }


@router.get("/app/access-history")
def access_history(request: Request, ws: Signed) -> Response:
    actor = ws.actor
    if actor.role != "patient" or not actor.patient_id:
        return render(request, "denied.html", 403, message=translate(request, N_(
            "Cette page montre à un patient qui a consulté son dossier.")))
    rt = runtime(request)
    try:
        with rt.gate.open(actor, auth.context(request)) as door:
            items = door.access_history(actor.patient_id, limit=SHOWN)
    except Forbidden:
        return render(request, "denied.html", 403, message=translate(request, N_(
            "Cette page montre à un patient qui a consulté son dossier.")))
    rows = [_row(request, item) for item in items]
    return render(request, "access_history.html", rows=rows, shown=SHOWN,
                  emergencies=sum(1 for r in rows if r["emergency"]))
