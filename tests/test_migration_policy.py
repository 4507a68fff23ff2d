"""Migration files and the additive-only policy: loading a set, linting its up files (no DB)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters._migration_files import MigrationError, check_policy, load_migrations

CREATE_X = ("0001_create_x", "CREATE TABLE x (y INT, note TEXT);", "DROP TABLE x;")
CREATE_W = ("0003_create_w", "CREATE TABLE w (id INT PRIMARY KEY);", "DROP TABLE w;")


def write(directory: Path, *migrations: tuple[str, str, str]) -> Path:
    """Write (label, up SQL, down SQL) triples as migration files into ``directory``."""
    directory.mkdir(exist_ok=True)
    for label, up, down in migrations:
        (directory / f"{label}.up.sql").write_text(up)
        (directory / f"{label}.down.sql").write_text(down)
    return directory


def test_repository_migrations_pass_the_policy() -> None:
    """The repository's own migrations load and satisfy the additive-only policy."""
    labels = [m.label for m in load_migrations()]
    assert labels[:2] == ["0001_showrooms", "0002_outbox"]
    assert check_policy() == []


def test_drop_column_without_marker_is_a_violation(tmp_path: Path) -> None:
    """ALTER TABLE ... DROP COLUMN in an up file, with no phase-2 marker, is reported."""
    write(tmp_path, CREATE_X, ("0002_drop_y", "ALTER TABLE x DROP COLUMN y;", "SELECT 1;"))
    [violation] = check_policy(tmp_path)
    assert (violation.version, violation.file, violation.statement) == (
        2,
        "0002_drop_y.up.sql",
        "ALTER TABLE x DROP COLUMN y",
    )
    assert "DROP" in violation.reason


def test_phase_2_marker_naming_an_earlier_migration_allows_it(tmp_path: Path) -> None:
    """A header '-- lomash: phase 2 of <earlier>' makes a destructive up file acceptable."""
    up = "-- Second phase: the code no longer reads y.\n-- lomash: phase 2 of 0001_create_x\n"
    write(tmp_path, CREATE_X, ("0002_drop_y", up + "ALTER TABLE x DROP COLUMN y;", "SELECT 1;"))
    assert check_policy(tmp_path) == []


@pytest.mark.parametrize(
    "marker",
    [
        "-- lomash: phase 2 of 0009_missing",  # no such migration
        "-- lomash: phase 2 of 0001_create_z",  # right version, wrong name
        "-- lomash: phase 2 of 0002_drop_y",  # itself, not an earlier one
        "-- lomash: phase 2 of 0003_create_w",  # a later one
        "-- lomash: phase two of 0001_create_x",  # not the exact form
    ],
)
def test_invalid_phase_2_marker_is_a_violation(tmp_path: Path, marker: str) -> None:
    """A marker that does not name an earlier migration exactly allows nothing."""
    up = f"{marker}\nALTER TABLE x DROP COLUMN y;"
    write(tmp_path, CREATE_X, ("0002_drop_y", up, "SELECT 1;"), CREATE_W)
    violations = check_policy(tmp_path)
    assert [(v.version, v.statement) for v in violations] == [
        (2, marker),
        (2, "ALTER TABLE x DROP COLUMN y"),
    ]


def test_marker_below_the_first_statement_is_not_a_header(tmp_path: Path) -> None:
    """Only the comment lines before the first statement can declare phase 2."""
    up = "ALTER TABLE x DROP COLUMN y;\n-- lomash: phase 2 of 0001_create_x\n"
    write(tmp_path, CREATE_X, ("0002_drop_y", up, "SELECT 1;"))
    assert [v.statement for v in check_policy(tmp_path)] == ["ALTER TABLE x DROP COLUMN y"]


def test_drop_inside_comments_and_strings_is_ignored(tmp_path: Path) -> None:
    """Destructive words in comments, literals, quoted names and function bodies don't count."""
    up = """
        -- drop table x; we will not
        /* DROP TABLE x; /* nested */ TRUNCATE x; */
        INSERT INTO x (note) VALUES ('DROP TABLE x; it''s -- DELETE FROM x');
        INSERT INTO x (note) VALUES (E'\\' DROP TABLE x');
        CREATE TABLE "drop table" ("delete from" TEXT);
        CREATE FUNCTION purge() RETURNS void LANGUAGE sql AS $body$ DELETE FROM x $body$;
        ALTER TABLE x ALTER COLUMN y DROP NOT NULL, ALTER COLUMN y DROP DEFAULT;
        ALTER TABLE x ADD COLUMN type TEXT;
        ALTER TABLE x ALTER COLUMN type SET DEFAULT 'a';
    """
    write(tmp_path, CREATE_X, ("0002_harmless", up, 'DROP TABLE "drop table";'))
    assert check_policy(tmp_path) == []


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE x",
        "drop index if exists x_y",
        "DROP TYPE mood",
        "DROP SCHEMA s CASCADE",
        "DROP VIEW v",
        "DROP FUNCTION f()",
        "ALTER TABLE x DROP CONSTRAINT x_y_check",
        "ALTER TABLE ONLY x ADD COLUMN z INT, DROP y",
        "TRUNCATE x",
        "DELETE FROM x WHERE y = 1",
        "WITH gone AS (DELETE FROM x RETURNING y) SELECT count(*) FROM gone",
        "ALTER TABLE x RENAME TO x2",
        "ALTER TABLE x RENAME COLUMN y TO y2",
        "ALTER TABLE x RENAME y TO y2",
        'ALTER INDEX "x_y" RENAME TO x_y2',
        "ALTER TABLE x ALTER COLUMN y TYPE BIGINT",
        "ALTER TABLE x ALTER y SET DATA TYPE BIGINT",
        'ALTER TABLE x ALTER COLUMN "y" TYPE BIGINT',
        "ALTER TABLE x ALTER COLUMN y SET NOT NULL",
        "ALTER TABLE x\n  ALTER COLUMN\n  y SET   NOT NULL",
        "ALTER TABLE x ADD COLUMN channel TEXT NOT NULL",
        "ALTER TABLE x ADD z INT NOT NULL",
        "ALTER TABLE x ADD COLUMN IF NOT EXISTS z INT NOT NULL REFERENCES y (id)",
        "ALTER TABLE x ADD COLUMN a INT DEFAULT 0, ADD COLUMN b INT NOT NULL",
        "DO $$ BEGIN DROP TABLE x; END $$",
        "DO LANGUAGE plpgsql $do$ BEGIN IF true THEN DELETE FROM x; END IF; END $do$",
    ],
)
def test_destructive_statements_are_violations(tmp_path: Path, statement: str) -> None:
    """Each destructive form in an up file is reported."""
    write(tmp_path, CREATE_X, ("0002_change", f"{statement};", "SELECT 1;"))
    violations = check_policy(tmp_path)
    assert violations
    assert {v.version for v in violations} == {2}


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE x ADD COLUMN z TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE x ADD COLUMN z INT DEFAULT 0 NOT NULL",
        "ALTER TABLE x ADD COLUMN z UUID REFERENCES y (id)",
        "ALTER TABLE x ADD COLUMN z INT GENERATED ALWAYS AS (y * 2) STORED NOT NULL",
        "CREATE TABLE w (id INT NOT NULL, note TEXT NOT NULL)",
    ],
)
def test_additive_statements_pass(tmp_path: Path, statement: str) -> None:
    """What the previous release can live with: a NOT NULL column with a default, a
    nullable or generated one, a new table's own NOT NULL columns."""
    write(tmp_path, CREATE_X, ("0002_change", f"{statement};", "SELECT 1;"))
    assert check_policy(tmp_path) == []


def test_destructive_statements_in_down_files_are_allowed(tmp_path: Path) -> None:
    """Down files are rollbacks: DROP, DELETE and TRUNCATE there are fine."""
    down = "DELETE FROM x; TRUNCATE x; ALTER TABLE x DROP COLUMN z; DROP TABLE x;"
    write(tmp_path, CREATE_X, ("0002_add_z", "ALTER TABLE x ADD COLUMN z INT;", down))
    assert check_policy(tmp_path) == []


@pytest.mark.parametrize(
    ("files", "version"),
    [
        (["0001_a.up.sql"], 1),  # no down file
        (["0001_a.down.sql"], 1),  # no up file
        (["0001_a.up.sql", "0001_a.down.sql", "0001_b.up.sql", "0001_b.down.sql"], 1),
        (["0001_a.up.sql", "0001_a.down.sql", "0003_c.up.sql", "0003_c.down.sql"], 3),
        (["0002_b.up.sql", "0002_b.down.sql"], 2),  # does not start at 0001
        (["0001_a.sql"], None),  # not an up or down file
    ],
)
def test_malformed_sets_are_refused(tmp_path: Path, files: list[str], version: int | None) -> None:
    """Missing halves, duplicated or non-contiguous versions and bad names are refused."""
    for name in files:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError) as raised:
        load_migrations(tmp_path)
    assert raised.value.version == version
