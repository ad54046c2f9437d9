"""The PostgreSQL database a bench creates for itself and drops after (--postgres URL)."""
from __future__ import annotations


def recreate(url: str, create: bool = True) -> None:
    """Drop the database `url` names (and create it again when `create`), through the server's
    `postgres` database. Raises psycopg.Error when the server refuses."""
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')
