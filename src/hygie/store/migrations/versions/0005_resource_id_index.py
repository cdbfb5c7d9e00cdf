"""index for looking up current versions by id (search joins)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 01:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_resource_tenant_rtype_rid_current"), "resource",
                    ["tenant", "rtype", "rid", "current"])


def downgrade() -> None:
    op.drop_index(op.f("ix_resource_tenant_rtype_rid_current"), table_name="resource")
