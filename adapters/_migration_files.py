"""Migration files and the additive-only policy: what a directory holds, what an up file may do.

Files
    A directory (default: the repository's ``migrations/``) holds pairs
    ``NNNN_name.up.sql`` / ``NNNN_name.down.sql``, versions contiguous from 0001.
    ``load_migrations`` refuses with ``MigrationError`` when a file is misnamed or not
    UTF-8, or a version is duplicated, missing or lacks its down file. A migration's
    checksum is the SHA-256 of its up file, as recorded in ``schema_migrations``.

The additive-only policy
    Migrations run before the new code is deployed, and a blue/green rollback sends
    traffic back to the old code on the new schema (shared/spec/fault-tolerance.md):
    an up file must leave the schema usable by the release before it. These are
    destructive and so are violations::

        DROP ... (any object, or an ALTER ... DROP of a column, constraint, attribute;
                  DROP DEFAULT / NOT NULL / IDENTITY / EXPRESSION only relax)
        TRUNCATE, DELETE FROM, ALTER ... RENAME,
        ALTER COLUMN ... [SET DATA] TYPE, ALTER COLUMN ... SET NOT NULL

    unless the file is phase 2 of a two-phase change, declared in its header (the
    comment lines before the first statement) by a line exactly of the form::

        -- lomash: phase 2 of 0007_split_name

    naming an earlier migration of the directory: phase 1, which shipped with code
    that copes with both shapes. Comments, string literals, quoted identifiers and
    dollar-quoted bodies are blanked before the scan, except the bodies of ``DO``
    blocks, which run there and then and are scanned. The scan is lexical: SQL built
    at run time (``EXECUTE``) is out of its reach, and it errs on the strict side (a
    column named ``drop`` must be quoted). Down files are rollbacks and are exempt.
    ``migrate_up`` refuses to run while ``check_policy`` reports anything.

Applying, reverting and reporting them against Postgres is ``adapters._migrations``,
which re-exports everything here.

Errors added here::

    LomashError
    └── MigrationError    the files or the recorded history forbid the run
                          (``version``: the migration at fault, None for the set)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from supervisors import LomashError

__all__ = [
    "MIGRATIONS_DIR",
    "Migration",
    "MigrationError",
    "PolicyViolation",
    "check_policy",
    "load_migrations",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

_FILE_NAME = re.compile(r"(?P<version>\d{4})_(?P<name>[A-Za-z0-9_]+)\.(?P<direction>up|down)\.sql")
_DIRECTIVE = "-- lomash:"
_PHASE_2 = re.compile(r"-- lomash: phase 2 of (?P<label>\d{4}_[A-Za-z0-9_]+)")
_EXCERPT_CHARS = 120


class MigrationError(LomashError):
    """The migration files or the recorded history forbid the run; nothing was changed.

    ``version`` is the migration at fault (None when the set as a whole is);
    ``violations`` lists the additive-only policy violations when that is the reason.
    """

    def __init__(
        self,
        message: str,
        *,
        version: int | None,
        violations: Sequence[PolicyViolation] = (),
    ) -> None:
        super().__init__(message)
        self.version = version
        self.violations = tuple(violations)


@dataclass(frozen=True, slots=True)
class Migration:
    """One version: its up and down SQL, and the checksum of the up file."""

    version: int
    name: str
    checksum: str
    up_sql: str = field(repr=False)
    down_sql: str = field(repr=False)

    @property
    def label(self) -> str:
        """``NNNN_name``, as in the file names and in phase-2 markers."""
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True, slots=True)
class PolicyViolation:
    """A destructive statement (or a bad phase-2 marker) in an up file."""

    version: int
    file: str
    statement: str
    reason: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in ``directory`` by version; ``MigrationError`` if the set is malformed."""
    if not directory.is_dir():
        raise MigrationError(f"{directory}: no such migrations directory", version=None)
    names: dict[int, set[str]] = {}
    files: dict[int, dict[str, Path]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(
                f"{path.name}: expected NNNN_name.up.sql or NNNN_name.down.sql", version=None
            )
        version = int(match["version"])
        names.setdefault(version, set()).add(match["name"])
        files.setdefault(version, {})[match["direction"]] = path
    migrations = []
    for expected, version in enumerate(sorted(files), start=1):
        if len(names[version]) > 1:
            raise MigrationError(
                f"version {version:04d} is used by {', '.join(sorted(names[version]))}",
                version=version,
            )
        if version != expected:
            raise MigrationError(
                f"versions must be contiguous from 0001: expected {expected:04d}, "
                f"found {version:04d}",
                version=version,
            )
        (name,) = names[version]
        pair = files[version]
        for direction in ("up", "down"):
            if direction not in pair:
                raise MigrationError(
                    f"{version:04d}_{name} has no {direction} file", version=version
                )
        up = pair["up"].read_bytes()
        try:
            up_sql, down_sql = up.decode(), pair["down"].read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise MigrationError(
                f"{version:04d}_{name}: not UTF-8 ({error.reason})", version=version
            ) from None
        migrations.append(
            Migration(
                version=version,
                name=name,
                checksum=hashlib.sha256(up).hexdigest(),
                up_sql=up_sql,
                down_sql=down_sql,
            )
        )
    return migrations


def check_policy(directory: Path = MIGRATIONS_DIR) -> list[PolicyViolation]:
    """The additive-only policy violations of the up files in ``directory``."""
    return _violations(load_migrations(directory))


# --- The additive-only policy --------------------------------------------------------

_DESTRUCTIVE = (
    (
        re.compile(r"(?<!\bON COMMIT )\bDROP\b(?! (?:DEFAULT|NOT NULL|IDENTITY|EXPRESSION)\b)"),
        "DROP removes what the running code may use",
    ),
    (re.compile(r"\bTRUNCATE\b"), "TRUNCATE removes rows"),
    (re.compile(r"\bDELETE FROM\b"), "DELETE FROM removes rows"),
    (
        re.compile(r"\bRENAME (?:TO|COLUMN|CONSTRAINT|ATTRIBUTE|VALUE|\S+ TO)\b"),
        "ALTER ... RENAME changes a name the running code uses",
    ),
    (
        re.compile(
            r"\bALTER (?:COLUMN |ATTRIBUTE )?(?!COLUMN |ATTRIBUTE )\S+ (?:SET DATA )?TYPE\b"
        ),
        "ALTER COLUMN ... TYPE changes what the running code reads and writes",
    ),
    (
        re.compile(r"\bALTER (?:COLUMN )?(?!COLUMN )\S+ SET NOT NULL\b"),
        "ALTER COLUMN ... SET NOT NULL rejects rows the running code may write",
    ),
    (
        # One ADD clause (up to its comma) with NOT NULL and neither DEFAULT nor
        # GENERATED: the running code's INSERTs, which do not name the column, fail.
        re.compile(
            r"\bADD (?:COLUMN )?(?!CONSTRAINT\b)(?:IF NOT EXISTS )?\S+ "
            r"(?:(?!\b(?:DEFAULT|GENERATED)\b)[^,])*?\bNOT NULL\b"
            r"(?:(?!\b(?:DEFAULT|GENERATED)\b)[^,])*(?:,|$)"
        ),
        "ADD COLUMN ... NOT NULL without a DEFAULT rejects the running code's INSERTs",
    ),
)
_TWO_PHASE_HINT = "not additive; a second phase declares '-- lomash: phase 2 of NNNN_name'"

# Comments, literals and quoted identifiers, found in one left-to-right scan.
_LEXEME = re.compile(
    r"""
      (?P<line_comment> --[^\n]* )
    | (?P<block_comment> /\* )
    | (?P<string> (?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'? | '(?:[^']|'')*'? )
    | (?P<identifier> "(?:[^"]|"")*"? )
    | (?P<dollar> (?<![\w$])\$(?:[A-Za-z_]\w*)?\$ )
    """,
    re.VERBOSE | re.DOTALL,
)
_COMMENT_DELIMITER = re.compile(r"/\*|\*/")
_DO_BEFORE = re.compile(r"\bDO\s+(?:LANGUAGE\s+\S+\s+)?$", re.IGNORECASE)


def _violations(migrations: Sequence[Migration]) -> list[PolicyViolation]:
    labels = {m.label: m.version for m in migrations}
    return [v for m in migrations for v in _up_file_violations(m, labels)]


def _up_file_violations(migration: Migration, labels: Mapping[str, int]) -> list[PolicyViolation]:
    file = f"{migration.label}.up.sql"
    found: list[PolicyViolation] = []
    phase_2 = False
    for line in _header(migration.up_sql):
        if not line.startswith(_DIRECTIVE):
            continue
        marker = _PHASE_2.fullmatch(line)
        phase_1 = labels.get(marker["label"]) if marker is not None else None
        if marker is None:
            reason = "unrecognised directive: expected '-- lomash: phase 2 of NNNN_name'"
        elif phase_1 is None or phase_1 >= migration.version:
            reason = f"phase 2 of {marker['label']}: no earlier migration has that name"
        else:
            phase_2 = True
            continue
        found.append(PolicyViolation(migration.version, file, line, reason))
    if phase_2:
        return found
    for words, text in _statements(migration.up_sql):
        for pattern, what in _DESTRUCTIVE:
            if pattern.search(words):
                found.append(
                    PolicyViolation(
                        migration.version, file, _excerpt(text), f"{what}: {_TWO_PHASE_HINT}"
                    )
                )
                break
    return found


def _header(sql: str) -> Iterator[str]:
    """The comment lines before the first statement, stripped."""
    for line in sql.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            return
        if stripped:
            yield stripped


def _statements(sql: str) -> Iterator[tuple[str, str]]:
    """Each statement as (its code in upper case, one space between words; its text)."""
    code = _code_only(sql)
    start = 0
    for end in [*(m.start() for m in re.finditer(";", code)), len(code)]:
        piece = code[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            yield " ".join(piece.upper().split()), sql[start + lead : end]
        start = end + 1


def _code_only(sql: str) -> str:
    """``sql`` with comments blanked and literals and quoted identifiers made opaque.

    Offsets are kept (every character is replaced by one), so a statement found in
    the result can be quoted from ``sql``. A ``DO`` block's body is code, kept.
    """
    out: list[str] = []
    position = 0
    while (match := _LEXEME.search(sql, position)) is not None:
        out.append(sql[position : match.start()])
        end = match.end()
        if match.lastgroup == "block_comment":
            end = _block_comment_end(sql, match.start())
            out.append(" " * (end - match.start()))
        elif match.lastgroup == "line_comment":
            out.append(" " * (end - match.start()))
        elif match.lastgroup == "dollar":
            tag = match.group()
            close = sql.find(tag, end)
            body_end = len(sql) if close < 0 else close
            end = len(sql) if close < 0 else close + len(tag)
            if _DO_BEFORE.search("".join(out)):
                body = _code_only(sql[match.end() : body_end])
                out.append(" " * len(tag) + body + " " * (end - body_end))
            else:
                out.append("_" * (end - match.start()))
        else:  # a string literal or a quoted identifier: one opaque word
            out.append("_" * (end - match.start()))
        position = end
    out.append(sql[position:])
    return "".join(out)


def _block_comment_end(sql: str, start: int) -> int:
    """Where the (possibly nested) block comment opening at ``start`` ends."""
    depth = 0
    for delimiter in _COMMENT_DELIMITER.finditer(sql, start):
        depth += 1 if delimiter.group() == "/*" else -1
        if depth == 0:
            return delimiter.end()
    return len(sql)


def _excerpt(text: str) -> str:
    words = " ".join(text.split())
    return words if len(words) <= _EXCERPT_CHARS else words[: _EXCERPT_CHARS - 1] + "…"
