//! Store faults: the failures of a store itself (full, read-only, I/O error, busy, out of
//! reach), as opposed to a statement that is wrong, and how each store's errors map to
//! them ([`classify_sqlite`], [`classify_pg`]).
//!
//! A fault is not the client's doing and not a bug: the service answers it with a
//! status that names it (never 500), readiness reports it, and its log lines are
//! aggregated. The HTTP mapping lives with the routes; this module only names the
//! faults, so both stores and both paths (writes, reads) agree on them.

/// A failure of the store itself. The same request may succeed once it clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreFault {
    /// No space left for the data: SQLITE_FULL (a full disk, or the `--db-max-size`
    /// cap), PostgreSQL SQLSTATE 53100 `disk_full`. Clears when an operator frees space.
    Full,
    /// The store refuses writes: SQLITE_READONLY (a read-only file or mount),
    /// PostgreSQL 25006 `read_only_sql_transaction` (a standby, or
    /// `default_transaction_read_only`). Clears when an operator fixes it.
    ReadOnly,
    /// The storage failed to read or write: SQLITE_IOERR, SQLITE_CANTOPEN, PostgreSQL
    /// class 58 (`io_error`, `system_error`). May clear by itself (a transient EIO) or
    /// not (a dying disk).
    Io,
    /// The store is held by someone else or short of a resource for now: SQLITE_BUSY
    /// and SQLITE_LOCKED past the busy timeout, PostgreSQL serialization failures,
    /// deadlocks, lock timeouts, cancelled statements, and the rest of class 53
    /// (out of memory, too many connections). Usually clears within moments.
    Busy,
    /// The connection to the store is gone or could not be made (PostgreSQL: class 08,
    /// a server shutting down or starting, a closed socket).
    ConnectionLost,
}

impl StoreFault {
    /// Every fault, for registering metric series.
    pub const ALL: [StoreFault; 5] = [
        StoreFault::Full,
        StoreFault::ReadOnly,
        StoreFault::Io,
        StoreFault::Busy,
        StoreFault::ConnectionLost,
    ];

    /// The `kind` label of `mega_store_faults_total` and the `fault` field of error
    /// answers.
    pub fn label(self) -> &'static str {
        match self {
            StoreFault::Full => "full",
            StoreFault::ReadOnly => "read_only",
            StoreFault::Io => "io",
            StoreFault::Busy => "busy",
            StoreFault::ConnectionLost => "connection_lost",
        }
    }

    /// What the fault means, as the end of a sentence starting "the store ...".
    pub fn describe(self) -> &'static str {
        match self {
            StoreFault::Full => "is full",
            StoreFault::ReadOnly => "is read-only",
            StoreFault::Io => "failed with an I/O error",
            StoreFault::Busy => "is busy",
            StoreFault::ConnectionLost => "is unreachable",
        }
    }

    /// Whether only an operator can clear it (space, permissions): retrying soon is
    /// pointless, so clients get 507 rather than 503 + `Retry-After`.
    pub fn needs_operator(self) -> bool {
        matches!(self, StoreFault::Full | StoreFault::ReadOnly)
    }
}

/// The fault behind a SQLite error, if it is one (a constraint or a malformed statement
/// is not).
pub fn classify_sqlite(error: &rusqlite::Error) -> Option<StoreFault> {
    use rusqlite::ErrorCode;
    let rusqlite::Error::SqliteFailure(failure, _) = error else {
        return None;
    };
    match failure.code {
        ErrorCode::DiskFull => Some(StoreFault::Full),
        ErrorCode::ReadOnly => Some(StoreFault::ReadOnly),
        ErrorCode::SystemIoFailure | ErrorCode::CannotOpen | ErrorCode::NoLargeFileSupport => {
            Some(StoreFault::Io)
        }
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::OutOfMemory => {
            Some(StoreFault::Busy)
        }
        _ => None,
    }
}

/// The fault behind a PostgreSQL error, if it is one. Any error without a SQLSTATE came
/// from the socket or the protocol, not the server: the connection is lost.
pub fn classify_pg(error: &postgres::Error) -> Option<StoreFault> {
    if error.is_closed() {
        return Some(StoreFault::ConnectionLost);
    }
    let Some(code) = error.code() else {
        return Some(StoreFault::ConnectionLost);
    };
    classify_sqlstate(code.code())
}

/// The fault a SQLSTATE names, if any.
fn classify_sqlstate(code: &str) -> Option<StoreFault> {
    match code {
        "53100" => Some(StoreFault::Full),
        "25006" => Some(StoreFault::ReadOnly),
        // Class 08: connection exception; 57P01-03: the server is shutting down,
        // crashed or not accepting connections yet.
        _ if code.starts_with("08") => Some(StoreFault::ConnectionLost),
        "57P01" | "57P02" | "57P03" => Some(StoreFault::ConnectionLost),
        _ if code.starts_with("58") => Some(StoreFault::Io),
        // Class 53 (insufficient resources), serialization failure, deadlock, lock
        // timeout, statement timeout or cancel.
        _ if code.starts_with("53") => Some(StoreFault::Busy),
        "40001" | "40P01" | "55P03" | "57014" => Some(StoreFault::Busy),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_error(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn sqlite_codes_map_to_their_faults() {
        let cases = [
            (rusqlite::ffi::SQLITE_FULL, Some(StoreFault::Full)),
            (rusqlite::ffi::SQLITE_READONLY, Some(StoreFault::ReadOnly)),
            (rusqlite::ffi::SQLITE_IOERR, Some(StoreFault::Io)),
            (rusqlite::ffi::SQLITE_IOERR_WRITE, Some(StoreFault::Io)),
            (rusqlite::ffi::SQLITE_BUSY, Some(StoreFault::Busy)),
            (rusqlite::ffi::SQLITE_LOCKED, Some(StoreFault::Busy)),
            (rusqlite::ffi::SQLITE_CONSTRAINT, None),
            (rusqlite::ffi::SQLITE_ERROR, None),
        ];
        for (code, want) in cases {
            assert_eq!(classify_sqlite(&sqlite_error(code)), want, "code {code}");
        }
        assert_eq!(classify_sqlite(&rusqlite::Error::QueryReturnedNoRows), None);
    }

    #[test]
    fn sqlstates_map_to_their_faults() {
        let cases = [
            ("53100", Some(StoreFault::Full)),
            ("25006", Some(StoreFault::ReadOnly)),
            ("58030", Some(StoreFault::Io)),
            ("58000", Some(StoreFault::Io)),
            ("08006", Some(StoreFault::ConnectionLost)),
            ("57P01", Some(StoreFault::ConnectionLost)),
            ("57P03", Some(StoreFault::ConnectionLost)),
            ("53300", Some(StoreFault::Busy)),
            ("40001", Some(StoreFault::Busy)),
            ("40P01", Some(StoreFault::Busy)),
            ("57014", Some(StoreFault::Busy)),
            ("23505", None),
            ("42P01", None),
        ];
        for (code, want) in cases {
            assert_eq!(classify_sqlstate(code), want, "SQLSTATE {code}");
        }
    }

    #[test]
    fn a_full_sqlite_file_is_classified_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = rusqlite::Connection::open(dir.path().join("t.db")).expect("open");
        conn.execute_batch("CREATE TABLE t (x BLOB); PRAGMA max_page_count = 4;")
            .expect("set up");
        let error = (0..100)
            .map(|_| conn.execute("INSERT INTO t VALUES (zeroblob(2000))", []))
            .find_map(Result::err)
            .expect("the page cap is reached");
        assert_eq!(classify_sqlite(&error), Some(StoreFault::Full), "{error}");
    }

    #[test]
    fn a_write_to_a_read_only_sqlite_file_is_classified_read_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        rusqlite::Connection::open(&path)
            .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
            .expect("create");
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open read-only");
        let error = conn
            .execute("INSERT INTO t VALUES (1)", [])
            .expect_err("read-only");
        assert_eq!(
            classify_sqlite(&error),
            Some(StoreFault::ReadOnly),
            "{error}"
        );
    }
}
