"""access rules: care relationships, consent rules, break-glass, alerts, undisclosed flag

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 00:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "care_relationship",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("practitioner", sa.String(64), nullable=False),
        sa.Column("patient", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(160), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "practitioner", "patient", "kind", "source",
                                name=op.f("pk_care_relationship")),
    )
    op.create_index(op.f("ix_care_relationship_tenant_patient"), "care_relationship",
                    ["tenant", "patient"])
    op.create_index(op.f("ix_care_relationship_tenant_source"), "care_relationship",
                    ["tenant", "source"])
    op.create_table(
        "consent_rule",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("patient", sa.String(64), nullable=False),
        sa.Column("source", sa.String(160), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "source", "actor", name=op.f("pk_consent_rule")),
    )
    op.create_index(op.f("ix_consent_rule_tenant_patient_actor"), "consent_rule",
                    ["tenant", "patient", "actor"])
    op.create_table(
        "break_glass",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("practitioner", sa.String(64), nullable=False),
        sa.Column("patient", sa.String(64), nullable=False),
        sa.Column("dek_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.LargeBinary(), nullable=False),
        sa.Column("granted_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_break_glass")),
    )
    op.create_index(op.f("ix_break_glass_tenant_practitioner_patient_expires_at"),
                    "break_glass", ["tenant", "practitioner", "patient", "expires_at"])
    op.create_table(
        "security_alert",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("patient", sa.String(64), nullable=True),
        sa.Column("ref", sa.String(64), nullable=True),
        sa.Column("acknowledged_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_alert")),
    )
    op.create_index(op.f("ix_security_alert_tenant_at"), "security_alert", ["tenant", "at"])
    with op.batch_alter_table("resource") as batch:
        batch.add_column(sa.Column("undisclosed", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("audit_event") as batch:
        batch.add_column(sa.Column("detail", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_column("detail")
    with op.batch_alter_table("resource") as batch:
        batch.drop_column("undisclosed")
    for table in ("security_alert", "break_glass", "consent_rule", "care_relationship"):
        op.drop_table(table)
