"""Alembic environment: runs on the connection ``vat_study.platform.store.upgrade_schema`` hands over
(``config.attributes["connection"]``, already inside a transaction and holding the lock)."""

from alembic import context

from vat_study.platform.store import VERSION_TABLE, Base


def include_object(obj, name, type_, reflected, compare_to):
    """Only the vat_ tables are ours; Optuna's tables in the same database are not."""
    if type_ == "table":
        return name.startswith("vat_") and name != VERSION_TABLE
    return True


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    include_object=include_object,
    render_as_batch=True,  # SQLite cannot ALTER most things: copy-and-move the table
)
with context.begin_transaction():
    context.run_migrations()
