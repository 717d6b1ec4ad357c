"""Why a trial failed, which seeds trained together, and a check on the status values.

* vat_trials.failure_kind: error | diverged | timeout | interrupted | worker_died; filled in for
  existing FAILED trials from their error text.
* vat_trials.batch_group (indexed): the id shared by seeds trained as one batched model.
* ck_vat_trials_status: status is one of RUNNING, COMPLETE, FAILED, PRUNED.

On SQLite the check constraint needs the table rebuilt (batch mode); upgrade_schema turns
foreign keys off around it, so the rebuild cannot cascade-delete any metric rows.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATUS_CHECK = "status IN ('RUNNING', 'COMPLETE', 'FAILED', 'PRUNED')"


def upgrade() -> None:
    with op.batch_alter_table("vat_trials") as batch:
        batch.add_column(sa.Column("failure_kind", sa.String(32), nullable=True))
        batch.add_column(sa.Column("batch_group", sa.String(64), nullable=True))
        batch.create_index("ix_vat_trials_batch_group", ["batch_group"])
        batch.create_check_constraint(op.f("ck_vat_trials_status"), STATUS_CHECK)
    trials = sa.table("vat_trials", sa.column("status", sa.String), sa.column("error", sa.Text),
                      sa.column("failure_kind", sa.String))
    failed = trials.c.status == "FAILED"
    op.execute(trials.update().where(failed, trials.c.error.like("interrupted%")).values(failure_kind="interrupted"))
    op.execute(trials.update().where(failed, trials.c.error.like("%FloatingPointError%")).values(failure_kind="diverged"))
    op.execute(trials.update().where(failed, trials.c.failure_kind.is_(None)).values(failure_kind="error"))


def downgrade() -> None:
    with op.batch_alter_table("vat_trials") as batch:
        batch.drop_constraint(op.f("ck_vat_trials_status"), type_="check")
        batch.drop_index("ix_vat_trials_batch_group")
        batch.drop_column("batch_group")
        batch.drop_column("failure_kind")
