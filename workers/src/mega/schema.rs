//! Opening the SQLite database: the file, the pragmas, and the `Mega` table; and
//! [`SchemaError`], why either store could not be opened.
//!
//! The table keeps the ancestor's shape (`id`, `num1`..`num6`) so its readers keep
//! working. A new table uses `id INTEGER PRIMARY KEY` without `AUTOINCREMENT`: the
//! latter updates `sqlite_sequence` on every insert (slower once CPU-bound),
//! and plain rowids are never reused unless the largest row is deleted. An existing
//! ancestor table with `AUTOINCREMENT` is accepted as it is.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// How hard each commit is pushed to disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `synchronous=NORMAL`: survives a process crash; the last commits may be lost on
    /// power loss (WAL is synced only at checkpoints).
    Normal,
    /// `synchronous=FULL`: every commit is synced to disk before it is acknowledged.
    /// Group commit makes this affordable.
    #[default]
    Full,
}

impl SyncMode {
    fn pragma(self) -> &'static str {
        match self {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        }
    }
}

/// Why the database could not be opened for loadlab.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The folder for the database file could not be created.
    #[error("could not create the folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// SQLite refused to open the file or run a set-up statement.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A table `Mega` exists but loadlab cannot write to it.
    #[error(
        "the existing table Mega is incompatible: {0} (expected columns id INTEGER PRIMARY \
         KEY and num1..num6 INTEGER; move the file away or pass another --db)"
    )]
    Incompatible(String),
    /// The PostgreSQL server could not be reached or refused the login.
    #[error("could not connect to {0}")]
    Unreachable(String),
    /// PostgreSQL refused a set-up statement.
    #[error("{0}")]
    Postgres(String),
    /// A PostgreSQL table `mega` exists but loadlab cannot write to it.
    #[error(
        "the existing table mega is incompatible: {0} (expected id bigint and num1..num6 \
         smallint; drop or rename it, or use another database)"
    )]
    IncompatiblePostgres(String),
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS Mega (
    id   INTEGER PRIMARY KEY,
    num1 INTEGER NOT NULL,
    num2 INTEGER NOT NULL,
    num3 INTEGER NOT NULL,
    num4 INTEGER NOT NULL,
    num5 INTEGER NOT NULL,
    num6 INTEGER NOT NULL
)";

/// Opens (creating if needed) the database for writing: WAL journal, the given sync
/// mode, a compatible `Mega` table, and the idempotency keys' table.
pub fn open_for_writing(path: &Path, sync: SyncMode) -> Result<Connection, SchemaError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| SchemaError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // journal_mode answers with the mode in force, so it is a query, not an execute.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(SchemaError::Incompatible(format!(
            "the file refused WAL mode (journal_mode={mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    conn.execute(CREATE_TABLE, [])?;
    check_compatible(&conn)?;
    if let Some(missing) = super::sqlite_keys::prepare_schema(&conn)? {
        return Err(SchemaError::Incompatible(format!(
            "the table mega_idempotency has no column {missing}"
        )));
    }
    Ok(conn)
}

/// Opens a read-only connection to a database that [`open_for_writing`] prepared.
pub fn open_for_reading(path: &Path) -> Result<Connection, SchemaError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Checks that `Mega` has an integer primary key `id` and columns `num1`..`num6`, and
/// that any other column can be left out of an insert.
fn check_compatible(conn: &Connection) -> Result<(), SchemaError> {
    let mut stmt = conn
        .prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('Mega')")?;
    let columns = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, bool>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let find = |name: &str| columns.iter().find(|c| c.0.eq_ignore_ascii_case(name));
    match find("id") {
        Some((_, ty, _, _, pk)) if *pk == 1 && ty.eq_ignore_ascii_case("INTEGER") => {}
        Some(_) => {
            return Err(SchemaError::Incompatible(
                "id is not an INTEGER PRIMARY KEY".into(),
            ));
        }
        None => return Err(SchemaError::Incompatible("there is no column id".into())),
    }
    if columns.iter().filter(|c| c.4 > 0).count() > 1 {
        return Err(SchemaError::Incompatible(
            "the primary key spans several columns".into(),
        ));
    }
    for i in 1..=6 {
        let name = format!("num{i}");
        match find(&name) {
            Some((_, ty, ..)) if ty.is_empty() || ty.to_ascii_uppercase().contains("INT") => {}
            Some((_, ty, ..)) => {
                return Err(SchemaError::Incompatible(format!("{name} has type {ty}")));
            }
            None => {
                return Err(SchemaError::Incompatible(format!(
                    "there is no column {name}"
                )));
            }
        }
    }
    let known = |name: &str| {
        name.eq_ignore_ascii_case("id")
            || (1..=6).any(|i| name.eq_ignore_ascii_case(&format!("num{i}")))
    };
    if let Some((name, ..)) = columns
        .iter()
        .find(|c| !known(&c.0) && c.2 && c.3.is_none())
    {
        return Err(SchemaError::Incompatible(format!(
            "column {name} is NOT NULL without a default, so loadlab cannot insert"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_the_table_and_its_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/loadlab.db");
        let conn = open_for_writing(&path, SyncMode::Full).expect("opened");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("sync");
        assert_eq!(sync, 2, "FULL");
    }

    #[test]
    fn accepts_the_ancestors_autoincrement_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        Connection::open(&path)
            .expect("open")
            .execute_batch(
                "CREATE TABLE Mega(id INTEGER PRIMARY KEY AUTOINCREMENT, num1 INTEGER, \
                 num2 INTEGER, num3 INTEGER, num4 INTEGER, num5 INTEGER, num6 INTEGER);",
            )
            .expect("ancestor schema");
        open_for_writing(&path, SyncMode::Normal).expect("compatible");
    }

    #[test]
    fn refuses_an_incompatible_table_with_a_clear_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .expect("open")
            .execute_batch("CREATE TABLE Mega(id TEXT PRIMARY KEY, numbers TEXT);")
            .expect("other schema");
        let err = open_for_writing(&path, SyncMode::Full).expect_err("incompatible");
        assert!(err.to_string().contains("incompatible"), "{err}");
    }
}
