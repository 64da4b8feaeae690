"""Migrations on real SQLite files: fresh, idempotent, v3 upgraded in place, newer refused."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from tracesd.errors import SchemaTooNew, StoreError
from tracesd.models import TRACE_COLUMNS
from tracesd.store import migrations
from tracesd.store.outbox import PENDING_SQL
from tracesd.sync.wire import SYNCED_FIELDS


def columns(db: Path, table: str = "traces") -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def user_version(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def traces_cli_v3(db: Path, rows: int = 3) -> None:
    """A database as the Traces CLI v3 leaves it, with rows."""
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE traces (id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, title TEXT,
            preview TEXT, timestamp INTEGER, directory TEXT, source_path TEXT,
            shared_url TEXT, shared_visibility TEXT);
        PRAGMA user_version = 3;
        """
    )
    conn.executemany(
        "INSERT INTO traces"
        " VALUES (?, 'claude-code', ?, 'p', ?, '/w', '/s', 'https://t/x', 'public')",
        [(f"t{i}", f"title {i}", 1_700_000_000_000 + i) for i in range(rows)],
    )
    conn.commit()
    conn.close()


def test_fresh_database_gets_the_current_schema(tmp_path: Path) -> None:
    """A new file ends at the current version with every INTERFACE column and tracesd's
    own tables."""
    db = tmp_path / "t.db"
    result = migrations.apply(db)
    assert (result.from_version, result.to_version) == (0, migrations.SCHEMA_VERSION)
    assert user_version(db) == migrations.SCHEMA_VERSION == 6
    assert list(TRACE_COLUMNS) == sorted(columns(db), key=list(TRACE_COLUMNS).index)
    assert set(columns(db)) == set(TRACE_COLUMNS)
    assert "path" in columns(db, "tracesd_files")


def test_applying_twice_changes_nothing(tmp_path: Path) -> None:
    """A second apply is a no-op."""
    db = tmp_path / "t.db"
    migrations.apply(db)
    result = migrations.apply(db)
    assert result.applied == ()
    assert result.from_version == result.to_version == 6


@pytest.mark.parametrize(("version", "name", "step"), migrations.SHARED)
def test_each_shared_step_is_idempotent(tmp_path: Path, version: int, name: str, step) -> None:
    """Every step can run again on a database it already migrated."""
    db = tmp_path / "t.db"
    migrations.apply(db)
    before = columns(db)
    with sqlite3.connect(db) as conn:
        step(conn)
        step(conn)
    assert columns(db) == before


def test_a_step_rerun_after_a_lost_version_bump_is_harmless(tmp_path: Path) -> None:
    """If user_version says 3 but the git columns exist (crash between), apply still works."""
    db = tmp_path / "t.db"
    migrations.apply(db)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 3")
    assert migrations.apply(db).applied == (
        "traces_git_context",
        "traces_canonical_remote",
        "traces_model",
    )
    assert user_version(db) == 6


def test_traces_cli_v3_database_upgrades_in_place_keeping_rows(tmp_path: Path) -> None:
    """v3 -> 6 adds the git columns and the model, and keeps every row and value."""
    db = tmp_path / "t.db"
    traces_cli_v3(db, rows=5)

    result = migrations.apply(db)

    assert (result.from_version, result.to_version) == (3, 6)
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM traces ORDER BY id")]
    assert [r["id"] for r in rows] == [f"t{i}" for i in range(5)]
    assert rows[2]["title"] == "title 2"
    assert rows[2]["shared_url"] == "https://t/x"
    assert {r["git_remote_url"] for r in rows} == {None}
    assert {r["model"] for r in rows} == {None}
    assert rows[2]["created_at"] == rows[2]["timestamp"] == 1_700_000_000_002


def test_older_layout_missing_columns_is_completed(tmp_path: Path) -> None:
    """An older Traces CLI table with fewer columns gains the missing ones."""
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE traces (id TEXT PRIMARY KEY, agent_id TEXT NOT NULL)")
        conn.execute("INSERT INTO traces VALUES ('old', 'codex')")
    migrations.apply(db)
    assert set(columns(db)) == set(TRACE_COLUMNS)


def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    """A database from a newer tracesd or Traces CLI is never downgraded or modified."""
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE traces (id TEXT PRIMARY KEY, future TEXT)")
        conn.execute("PRAGMA user_version = 9")
    with pytest.raises(SchemaTooNew, match="schema version 9"):
        migrations.apply(db)
    assert user_version(db) == 9
    assert columns(db) == ["id", "future"]


def test_not_a_database_is_a_clear_store_error(tmp_path: Path) -> None:
    """A file that is not SQLite gives a StoreError naming the file."""
    db = tmp_path / "t.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=str(db)):
        migrations.apply(db)


def test_failing_step_leaves_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that fails half-way rolls back: no column, no version bump."""
    db = tmp_path / "t.db"
    traces_cli_v3(db)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE traces ADD COLUMN half_done TEXT")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(migrations, "SHARED", ((4, "broken", broken),))
    with pytest.raises(StoreError):
        migrations.apply(db)
    assert user_version(db) == 3
    assert "half_done" not in columns(db)


#: the outbox's synced columns before schema 6 (issue 12)
SYNCED_BEFORE_6 = (
    "agent_id",
    "title",
    "preview",
    "timestamp",
    "directory",
    "shared_visibility",
    "git_remote_url",
    "git_branch",
    "git_ref",
)


def tracesd_v4(db: Path, remotes: dict[str, str | None], monkeypatch: pytest.MonkeyPatch) -> None:
    """A database as tracesd with schema 4 left it (its migrations, outbox triggers
    included), one trace per remote, every trace acknowledged by the server."""
    with monkeypatch.context() as m:
        m.setattr(migrations, "SCHEMA_VERSION", 4)
        m.setattr(migrations, "SHARED", migrations.SHARED[:2])
        m.setattr(migrations, "_OUTBOX_SYNCED", SYNCED_BEFORE_6)
        migrations.apply(db)
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO traces (id, agent_id, title, timestamp, directory, git_remote_url,"
            " git_branch, git_ref, created_at, updated_at)"
            " VALUES (?, 'codex', ?, 1000, '/w', ?, 'main', ?, 5, 6)",
            [(i, f"title {i}", url, "a" * 40) for i, url in remotes.items()],
        )
        conn.execute("UPDATE tracesd_outbox SET sent_version = version")
    assert user_version(db) == 4


def test_a_v4_database_gets_every_repository_url_in_canonical_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 -> 5 rewrites each stored URL to its canonical form (INTERFACE section 5) and
    changes nothing else; the traces whose URL changed are sent again (the server should
    know the repository by the same identity), the others are not."""
    raw = {
        "scp": "git@github.com:Acme/App.git",
        "ssh": "ssh://git@GitHub.com:22/Acme/App.git/",
        "https": "https://github.com/Acme/App.git",
        "port": "https://Example.COM:8443/o/r.git/",
        "canonical": "https://github.com/Acme/App",
        "local": "/srv/git/repo.git",
        "none": None,
    }
    db = tmp_path / "t.db"
    tracesd_v4(db, raw, monkeypatch)
    before = {r["id"]: r for r in rows(db)}

    with monkeypatch.context() as m:
        m.setattr(migrations, "SCHEMA_VERSION", 5)
        m.setattr(migrations, "SHARED", migrations.SHARED[:3])
        m.setattr(migrations, "_OUTBOX_SYNCED", SYNCED_BEFORE_6)
        result = migrations.apply(db)

    assert (result.from_version, result.to_version) == (4, 5)
    assert result.applied == ("traces_canonical_remote",)
    after = {r["id"]: r for r in rows(db)}
    assert {i: r["git_remote_url"] for i, r in after.items()} == {
        "scp": "https://github.com/Acme/App",
        "ssh": "https://github.com/Acme/App",
        "https": "https://github.com/Acme/App",
        "port": "https://example.com:8443/o/r",
        "canonical": "https://github.com/Acme/App",
        "local": "/srv/git/repo.git",
        "none": None,
    }
    for i, row in after.items():
        assert {**row, "git_remote_url": None} == {**before[i], "git_remote_url": None}, i
    with sqlite3.connect(db) as conn:
        pending = {
            r[0]
            for r in conn.execute(
                "SELECT trace_id FROM tracesd_outbox WHERE version > sent_version"
            )
        }
    assert pending == {"scp", "ssh", "https", "port"}

    assert migrations.apply(db).applied == ("traces_model",)
    step = migrations.SHARED[2][2]
    with sqlite3.connect(db) as conn:
        step(conn)  # idempotent on its own: a crash before the version bump re-runs it
    assert {r["id"]: {**r, "model": None} for r in rows(db)} == {
        i: {**r, "model": None} for i, r in after.items()
    }


def rows(db: Path) -> list[dict[str, object]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM traces ORDER BY id")]


V5_DUMP = Path(__file__).parent / "fixtures" / "tracesd-v5.sql"


def tracesd_v5(db: Path) -> None:
    """tracesd's database at schema 5, as that code made it (tests/fixtures/tracesd-v5.sql):
    two traces, both acknowledged by the server."""
    with sqlite3.connect(db) as conn:
        conn.executescript(V5_DUMP.read_text())
        conn.execute("PRAGMA user_version = 5")


V6_DUMP = Path(__file__).parent / "fixtures" / "tracesd-v6.sql"


def tracesd_v6(db: Path) -> None:
    """tracesd's database at schema 6, as that code made it (tests/fixtures/tracesd-v6.sql):
    two traces, both acknowledged by the server."""
    with sqlite3.connect(db) as conn:
        conn.executescript(V6_DUMP.read_text())
        conn.execute("PRAGMA user_version = 6")


def pending(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT trace_id FROM tracesd_outbox WHERE version > sent_version")
        return {r[0] for r in found}


def test_a_v5_database_gains_the_model_and_syncs_what_the_client_sends(tmp_path: Path) -> None:
    """5 -> 6 on a real schema-5 file: a `model` column (NULL in every existing row), every
    row and value kept, nothing made pending; the outbox trigger now fires on the fields the
    client sends (the Traces CLI's PUT set: title, directory, model, created_at, git, and
    shared_url) and no longer on preview, timestamp or visibility."""
    db = tmp_path / "t.db"
    tracesd_v5(db)
    before = {r["id"]: r for r in rows(db)}

    result = migrations.apply(db)

    assert (result.from_version, result.to_version) == (5, 6)
    assert result.applied == (
        "traces_model",
        "0004_shared_index",
        "0005_outbox_claim_order",
        "0006_messages",
    )
    after = {r["id"]: r for r in rows(db)}
    assert {i: r.pop("model") for i, r in after.items()} == dict.fromkeys(before)
    assert after == before
    assert pending(db) == set()

    claude, codex = "0f8b6d1e-4c2a-4e7b-9a51-3d2c1b0a9e87", "019aa1b2-3c4d-7e5f-8a9b-0c1d2e3f4a5b"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE traces SET preview = 'newer', timestamp = timestamp + 1,"
            " shared_visibility = 'private', source_path = '/moved', updated_at = 1"
        )
    assert pending(db) == set()
    for column, value in (
        ("model", "'claude-sonnet-4-5'"),
        ("shared_url", "'https://traces.example/s/new'"),
        ("created_at", "created_at + 1"),
        ("title", "'another'"),
        ("directory", "'/elsewhere'"),
        ("git_branch", "'other'"),
    ):
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE tracesd_outbox SET sent_version = version")
            conn.execute(f"UPDATE traces SET {column} = {value} WHERE id = ?", (claude,))
        assert pending(db) == {claude}, column
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE tracesd_outbox SET sent_version = version")
        conn.execute("UPDATE traces SET model = model WHERE id = ?", (codex,))
    assert pending(db) == set()

    assert migrations.apply(db).applied == ()
    step = migrations.SHARED[-1][2]
    with sqlite3.connect(db) as conn:
        step(conn)  # idempotent on its own: a crash before the version bump re-runs it
        step(conn)
        triggers = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'tracesd_outbox_update'"
        ).fetchone()[0]
    assert triggers == 1


def test_a_new_database_syncs_the_same_columns_as_a_migrated_one(tmp_path: Path) -> None:
    """The outbox trigger of a new file and of a file migrated from 5 are the same."""
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    migrations.apply(new)
    tracesd_v5(old)
    migrations.apply(old)

    def trigger(db: Path) -> str:
        with sqlite3.connect(db) as conn:
            sql = conn.execute(
                "SELECT sql FROM sqlite_master WHERE name = 'tracesd_outbox_update'"
            ).fetchone()[0]
        return " ".join(str(sql).replace("IF NOT EXISTS ", "").split())

    assert trigger(new) == trigger(old)
    assert "OF agent_id, title, directory, model, created_at, shared_url," in trigger(new)


def _schema_sql(db: Path, name: str) -> str:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    assert row is not None, name
    return " ".join(str(row[0]).split())


@pytest.mark.parametrize("made", ["new", "schema 5", "schema 6"])
def test_the_outbox_watches_what_sync_sends_and_indexes_what_it_claims(
    tmp_path: Path, made: str
) -> None:
    """Each migration froze its own copy of the synced columns and of the pending rule; once
    migrated, a new file and files made by earlier versions watch exactly the fields the
    client sends (wire.SYNCED_FIELDS) and index exactly the rows the outbox claims. Editing
    the live list without a migration, or a migration's copy alone, fails here."""
    db = tmp_path / "t.db"
    {"new": lambda _: None, "schema 5": tracesd_v5, "schema 6": tracesd_v6}[made](db)
    migrations.apply(db)

    trigger = _schema_sql(db, "tracesd_outbox_update")
    found = re.fullmatch(
        r"CREATE TRIGGER .*? AFTER UPDATE OF (.*?) ON traces WHEN (.*?) BEGIN .*", trigger
    )
    assert found is not None, trigger
    watched, when = found.groups()
    assert set(watched.split(", ")) == set(SYNCED_FIELDS)
    compared = re.findall(r"OLD\.(\w+) IS NOT NEW\.\1", when)
    assert when == " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in compared)
    assert set(compared) == set(SYNCED_FIELDS)

    index = _schema_sql(db, "tracesd_outbox_pending_order")
    assert index.endswith(f" WHERE {PENDING_SQL}"), index


def test_a_database_of_the_last_release_gains_the_message_tables_with_nothing_queued(
    tmp_path: Path,
) -> None:
    """The schema-6 file of the release before message follow: 0006 adds the follower's
    tables (empty: every followed session is read from its start on the first run), keeps
    every row, makes nothing pending, and is idempotent on its own."""
    db = tmp_path / "t.db"
    tracesd_v6(db)
    before = {r["id"]: r for r in rows(db)}

    assert migrations.apply(db).applied == ("0006_messages",)

    assert {r["id"]: r for r in rows(db)} == before
    assert pending(db) == set()
    with sqlite3.connect(db) as conn:
        for table in ("follow", "names", "outbox"):
            assert conn.execute(f"SELECT COUNT(*) FROM tracesd_message_{table}").fetchone() == (0,)
        step = dict(migrations.PRIVATE)["0006_messages"]
        step(conn)
    assert migrations.apply(db).applied == ()
