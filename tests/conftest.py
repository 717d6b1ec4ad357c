import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def pg_url():
    from pg import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path):
    """The same store tests run against every backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    url = request.getfixturevalue("pg_url")
    # a fresh database per test: drop everything the previous test left
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    eng.dispose()
    return url


PLATFORM_MODULES = {"test_cli", "test_cluster", "test_concurrency", "test_reliability", "test_migrations", "test_security"}


def pytest_collection_modifyitems(config, items):
    """``platform``: tests that start Ray, PostgreSQL or CLI processes, or inject faults.
    ``make test-fast`` leaves them out (science, spec, analyses, the store on SQLite);
    ``make test`` runs everything. Assigned explicitly: by module (``PLATFORM_MODULES``, or the
    module's own ``pytestmark``), by a PostgreSQL fixture or parameter (which starts a server),
    or on the test itself (``@pytest.mark.platform``, ``pytest.param("ray", marks=...)``)."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        params = getattr(getattr(item, "callspec", None), "params", {})
        if module in PLATFORM_MODULES or "pg_url" in item.fixturenames or params.get("storage_url") == "postgresql":
            item.add_marker(pytest.mark.platform)
