"""index for date searches from a lower bound (search_date by hi)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 14:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_search_date_tenant_rtype_param_hi"), "search_date",
                    ["tenant", "rtype", "param", "hi"])


def downgrade() -> None:
    op.drop_index(op.f("ix_search_date_tenant_rtype_param_hi"), table_name="search_date")
