//! What opening either store shares: [`SyncMode`], how hard a commit is pushed to disk,
//! and [`SchemaError`], why a store could not be opened or prepared. Each store's own
//! schema lives in its folder (`sqlite::schema`, `pg::schema`).

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
    /// The value of SQLite's `PRAGMA synchronous` for this mode.
    pub(crate) fn pragma(self) -> &'static str {
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
