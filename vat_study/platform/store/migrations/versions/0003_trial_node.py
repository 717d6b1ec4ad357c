"""Which machine of a cluster ran a trial.

* vat_trials.node: the Ray node id of the worker that ran the trial (None: in-process, or a
  store written before 0003). ``host`` alone cannot tell two nodes of one machine apart, nor
  several containers that share a host name.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vat_trials") as batch:
        batch.add_column(sa.Column("node", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vat_trials") as batch:
        batch.drop_column("node")
