//! Which store holds `Mega`: a SQLite file (embedded, the default) or a PostgreSQL
//! database (shared by every process that names it).
//!
//! A *store* is the kind of database ([`Store`]); a [`Database`] is one concrete place:
//! a file path or a connection URL. `--db` takes either; a `postgres://` or
//! `postgresql://` prefix selects PostgreSQL, anything else is a SQLite path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The kind of store: the `store` label of every `mega_*` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// One SQLite file, written by one process.
    Sqlite,
    /// A PostgreSQL database, written by any number of processes.
    Postgres,
}

impl Store {
    /// The metric label and the name `/info` shows.
    pub fn label(self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres => "postgres",
        }
    }
}

/// Where `Mega` lives.
#[derive(Clone)]
pub enum Database {
    /// A SQLite file; its folder is created if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by connection URL.
    Postgres(PostgresUrl),
}

/// A parsed PostgreSQL connection URL. Its `Display` and `Debug` never show the
/// password, so it can be logged and shown on `/info`.
#[derive(Clone)]
pub struct PostgresUrl {
    /// Boxed (and shared): `postgres::Config` is large, and clones are common.
    config: std::sync::Arc<postgres::Config>,
    /// The URL as given, password masked.
    shown: String,
}

/// Why `--db` is not a usable database.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The value looked like a PostgreSQL URL but did not parse.
    #[error("`{url}` is not a PostgreSQL connection URL: {reason}")]
    BadUrl {
        /// The value, password masked.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// The value was empty.
    #[error("the database is empty: give a SQLite file path or a postgres:// URL")]
    Empty,
}

impl Database {
    /// The kind of store.
    pub fn store(&self) -> Store {
        match self {
            Database::Sqlite(_) => Store::Sqlite,
            Database::Postgres(_) => Store::Postgres,
        }
    }
}

impl FromStr for Database {
    type Err = DatabaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(DatabaseError::Empty);
        }
        let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            let shown = mask_password(s);
            let config = postgres::Config::from_str(s).map_err(|e| DatabaseError::BadUrl {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
            Ok(Database::Postgres(PostgresUrl {
                config: std::sync::Arc::new(config),
                shown,
            }))
        } else {
            Ok(Database::Sqlite(PathBuf::from(s)))
        }
    }
}

impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Self {
        Database::Sqlite(path)
    }
}

impl From<&PathBuf> for Database {
    fn from(path: &PathBuf) -> Self {
        Database::Sqlite(path.clone())
    }
}

impl From<&Path> for Database {
    fn from(path: &Path) -> Self {
        Database::Sqlite(path.to_path_buf())
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => f.write_str(&url.shown),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Database::Postgres(url) => f.debug_tuple("Postgres").field(&url.shown).finish(),
        }
    }
}

impl PostgresUrl {
    /// The client configuration (holding the password, if any).
    pub fn config(&self) -> &postgres::Config {
        &self.config
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostgresUrl").field(&self.shown).finish()
    }
}

/// `text` with the password of any `scheme://user:password@` in it replaced by `***`:
/// for URLs, and for command lines that hold one (`/info` lists the arguments).
pub fn mask_password(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &text[authority_start..];
    // The authority ends at the first '/', '?' or '#'; the user info at its last '@'.
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return text.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return text.to_owned();
    };
    format!(
        "{}{}:***{}",
        &text[..authority_start],
        &authority[..colon],
        &text[authority_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_selects_postgres_and_a_path_sqlite() {
        let pg: Database = "postgres://app@127.0.0.1:5433/loadlab"
            .parse()
            .expect("url");
        assert_eq!(pg.store(), Store::Postgres);
        let pg: Database = "postgresql://app@localhost/loadlab".parse().expect("url");
        assert_eq!(pg.store(), Store::Postgres);
        let file: Database = "data/loadlab.db".parse().expect("path");
        assert_eq!(file.store(), Store::Sqlite);
        assert_eq!(file.to_string(), "data/loadlab.db");
    }

    #[test]
    fn the_password_is_never_shown() {
        let pg: Database = "postgres://app:s3cret@db.example:5432/loadlab"
            .parse()
            .expect("url");
        assert_eq!(pg.to_string(), "postgres://app:***@db.example:5432/loadlab");
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert_eq!(
            mask_password("--db=postgresql://u:p%40ss@h/d"),
            "--db=postgresql://u:***@h/d"
        );
        assert_eq!(mask_password("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(mask_password("plain text"), "plain text");
    }

    #[test]
    fn a_broken_url_is_refused_without_its_password() {
        let err = "postgres://app:s3cret@host:notaport/db"
            .parse::<Database>()
            .expect_err("bad port");
        let message = err.to_string();
        assert!(
            message.contains("not a PostgreSQL connection URL"),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
    }
}
