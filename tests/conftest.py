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
