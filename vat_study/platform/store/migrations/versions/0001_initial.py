"""The first schema (vat-study 0.1.0 as it landed, before schema versions were recorded).

A store made by that release has exactly these tables and no version table; upgrade_schema
stamps it "0001" and upgrades from there.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vat_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("spec_path", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vat_studies"),
        sa.UniqueConstraint("name", name="uq_vat_studies_name"),
    )
    op.create_table(
        "vat_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("config_key", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("optuna_number", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vat_trials"),
        sa.UniqueConstraint("study_id", "key", name="uq_vat_trials_study_key"),
        sa.ForeignKeyConstraint(["study_id"], ["vat_studies.id"], ondelete="CASCADE",
                                name="fk_vat_trials_study_id_vat_studies"),
    )
    op.create_index("ix_vat_trials_study_id", "vat_trials", ["study_id"])
    op.create_index("ix_vat_trials_config_key", "vat_trials", ["config_key"])
    op.create_index("ix_vat_trials_status", "vat_trials", ["status"])
    for table, extra, unique in (
        ("vat_metrics", [sa.Column("step", sa.Integer(), nullable=False)], ("trial_id", "step", "name")),
        ("vat_final_metrics", [], ("trial_id", "name")),
    ):
        uq = "uq_vat_metrics_trial_step_name" if table == "vat_metrics" else "uq_vat_final_metrics_trial_name"
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("trial_id", sa.Integer(), nullable=False),
            *extra,
            sa.Column("name", sa.String(100), nullable=False),
            sa.Column("value", sa.Float(), nullable=True),
            sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
            sa.UniqueConstraint(*unique, name=uq),
            sa.ForeignKeyConstraint(["trial_id"], ["vat_trials.id"], ondelete="CASCADE",
                                    name=f"fk_{table}_trial_id_vat_trials"),
        )
        op.create_index(f"ix_{table}_trial_id", table, ["trial_id"])


def downgrade() -> None:
    for table in ("vat_final_metrics", "vat_metrics", "vat_trials", "vat_studies"):
        op.drop_table(table)
