//! Opening the SQLite database: the file, the pragmas, the `Mega` table and the
//! idempotency keys' table, and checking that existing tables are ones loadlab can
//! write.
//!
//! The table keeps the ancestor's shape (`id`, `num1`..`num6`) so its readers keep
//! working. A new table uses `id INTEGER PRIMARY KEY` without `AUTOINCREMENT`: the
//! latter updates `sqlite_sequence` on every insert (slower once CPU-bound),
//! and plain rowids are never reused unless the largest row is deleted. An existing
//! ancestor table with `AUTOINCREMENT` is accepted as it is.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::keys;
use crate::mega::schema::{SchemaError, SyncMode};

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
pub(super) fn open_for_writing(path: &Path, sync: SyncMode) -> Result<Connection, SchemaError> {
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
    // The keys' table and its index, if absent (a database from before idempotent
    // inserts gains them here).
    conn.execute_batch(keys::CREATE)?;
    let names: Vec<String> = columns(&conn, "mega_idempotency")?
        .into_iter()
        .map(|c| c.name)
        .collect();
    if let Some(missing) = keys::COLUMNS
        .iter()
        .find(|c| !names.iter().any(|n| n.eq_ignore_ascii_case(c)))
    {
        return Err(SchemaError::Incompatible(format!(
            "the table mega_idempotency has no column {missing}"
        )));
    }
    Ok(conn)
}

/// Opens a read-only connection to a database that [`open_for_writing`] prepared.
pub(super) fn open_for_reading(path: &Path) -> Result<Connection, SchemaError> {
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
    let columns = columns(conn, "Mega")?;
    let find = |name: &str| columns.iter().find(|c| c.name.eq_ignore_ascii_case(name));
    match find("id") {
        Some(id) if id.primary_key == 1 && id.declared_type.eq_ignore_ascii_case("INTEGER") => {}
        Some(_) => {
            return Err(SchemaError::Incompatible(
                "id is not an INTEGER PRIMARY KEY".into(),
            ));
        }
        None => return Err(SchemaError::Incompatible("there is no column id".into())),
    }
    if columns.iter().filter(|c| c.primary_key > 0).count() > 1 {
        return Err(SchemaError::Incompatible(
            "the primary key spans several columns".into(),
        ));
    }
    for i in 1..=6 {
        let name = format!("num{i}");
        match find(&name) {
            Some(c)
                if c.declared_type.is_empty()
                    || c.declared_type.to_ascii_uppercase().contains("INT") => {}
            Some(c) => {
                return Err(SchemaError::Incompatible(format!(
                    "{name} has type {}",
                    c.declared_type
                )));
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
    if let Some(column) = columns
        .iter()
        .find(|c| !known(&c.name) && c.not_null && c.default.is_none())
    {
        return Err(SchemaError::Incompatible(format!(
            "column {} is NOT NULL without a default, so loadlab cannot insert",
            column.name
        )));
    }
    Ok(())
}

/// One column of a table, as `pragma_table_info` describes it.
struct Column {
    name: String,
    /// As declared (SQLite keeps any text, or none).
    declared_type: String,
    not_null: bool,
    default: Option<String>,
    /// The column's position in the primary key, from 1; 0 when not part of it.
    primary_key: i64,
}

/// The columns of `table` (none when it does not exist).
fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<Column>> {
    let mut stmt =
        conn.prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)")?;
    stmt.query_map([table], |row| {
        Ok(Column {
            name: row.get(0)?,
            declared_type: row.get(1)?,
            not_null: row.get(2)?,
            default: row.get(3)?,
            primary_key: row.get(4)?,
        })
    })?
    .collect()
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
