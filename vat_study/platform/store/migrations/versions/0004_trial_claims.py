"""Trial claims with heartbeats: several drivers of one study share its trials.

* vat_drivers: one row per ``vat-study run`` process of a study (host, pid, the machine and
  process namespace its pid belongs to, started, last heartbeat, finished, reaped by).
* vat_trials.driver (indexed): the token of the driver whose claim a RUNNING trial is. NULL for
  trials written before 0004: a RUNNING one of those has no live driver and is redone.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vat_drivers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("machine", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reaped_by", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["study_id"], ["vat_studies.id"], name=op.f("fk_vat_drivers_study_id_vat_studies"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vat_drivers")),
        sa.UniqueConstraint("token", name=op.f("uq_vat_drivers_token")),
    )
    op.create_index(op.f("ix_vat_drivers_study_id"), "vat_drivers", ["study_id"])
    with op.batch_alter_table("vat_trials") as batch:
        batch.add_column(sa.Column("driver", sa.String(64), nullable=True))
        batch.create_index("ix_vat_trials_driver", ["driver"])


def downgrade() -> None:
    with op.batch_alter_table("vat_trials") as batch:
        batch.drop_index("ix_vat_trials_driver")
        batch.drop_column("driver")
    op.drop_index(op.f("ix_vat_drivers_study_id"), table_name="vat_drivers")
    op.drop_table("vat_drivers")
