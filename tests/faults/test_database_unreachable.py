"""The database unreachable: /readyz says so with a 503, every route answers a clean 503, then recovers."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_ADMIN_URL
from tests.factories import lenet_spec


def _set_reachable(database_url: str, reachable: bool) -> None:
    """As a failover or a DBA would: no new connections to the database, and the open ones cut."""
    name = make_url(database_url).database
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(reachable).lower()}'))
        if not reachable:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                {"name": name},
            )
    admin.dispose()


def test_database_unreachable_is_a_clean_503_and_ready_again_after(api_on, private_postgres):
    stack = api_on(private_postgres)
    assert stack.http.get("/readyz").status_code == 200
    job = stack.submit(lenet_spec())

    _set_reachable(private_postgres, False)
    try:
        ready = stack.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"] == "unreachable"
        for method, path, body in [
            ("GET", "/v1/jobs", None),
            ("GET", f"/v1/jobs/{job['id']}", None),
            ("POST", "/v1/jobs", lenet_spec()),
        ]:
            response = stack.http.request(method, path, json=body)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["content-type"] == "application/json"
            assert set(response.json()) == {"detail"}
            assert "Traceback" not in response.text and "psycopg" not in response.text
    finally:
        _set_reachable(private_postgres, True)

    assert stack.http.get("/readyz").status_code == 200  # the pool reconnects by itself
    assert stack.http.get(f"/v1/jobs/{job['id']}").status_code == 200
