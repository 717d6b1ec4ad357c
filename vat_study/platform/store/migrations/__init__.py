"""Alembic migrations of the vat_ tables (version table ``vat_alembic_version``).

Applied by ``vat_study.platform.store.upgrade_schema`` on the first use of a database in a process; to
add one, copy the newest file in versions/, bump ``revision``/``down_revision`` and
``store.SCHEMA_REVISION``, and extend tests/test_migrations.py with data written at the old
revision.
"""
