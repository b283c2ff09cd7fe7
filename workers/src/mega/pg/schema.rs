//! The writer's PostgreSQL session and the schema: the sequence `mega_id_seq`, the
//! table `mega` and the idempotency keys' table, created if absent under an advisory
//! lock (several processes may start at once), and an existing `mega` checked for what
//! binary `COPY` needs.

use postgres::Client;

use super::{connect, describe, keys};
use crate::mega::schema::{SchemaError, SyncMode};
use crate::mega::store::PostgresUrl;

/// Creates what loadlab needs, if absent. The table is `mega` (PostgreSQL folds the
/// ancestor's unquoted `Mega` to lower case, so both spellings name it).
const CREATE: &str = "
    CREATE SEQUENCE IF NOT EXISTS mega_id_seq;
    CREATE TABLE IF NOT EXISTS mega (
        id   bigint PRIMARY KEY DEFAULT nextval('mega_id_seq'),
        num1 smallint NOT NULL,
        num2 smallint NOT NULL,
        num3 smallint NOT NULL,
        num4 smallint NOT NULL,
        num5 smallint NOT NULL,
        num6 smallint NOT NULL
    );";

/// Serialises schema creation between processes starting at once: two concurrent
/// `CREATE ... IF NOT EXISTS` can both decide to create and one then fails on a
/// unique violation in the catalogue. The key is arbitrary ("loadlab" in ASCII).
const SCHEMA_LOCK_KEY: i64 = 0x006c_6f61_646c_6162;

/// A writer session: connected, with the commit durability the sync mode asks for.
pub(super) fn open(url: &PostgresUrl, sync: SyncMode) -> Result<Client, SchemaError> {
    let mut client = connect(url, "loadlab-writer")
        .map_err(|e| SchemaError::Unreachable(format!("{url}: {}", describe(&e))))?;
    // `on`: the commit waits for the WAL flush, as SQLite's FULL; `off`: it does not,
    // and a crash of the server may lose the last acknowledged commits.
    let setting = match sync {
        SyncMode::Full => "SET synchronous_commit = on",
        SyncMode::Normal => "SET synchronous_commit = off",
    };
    client
        .batch_execute(setting)
        .map_err(|e| SchemaError::Postgres(describe(&e)))?;
    Ok(client)
}

pub(super) fn prepare_schema(client: &mut Client) -> Result<(), SchemaError> {
    let pg = |e: postgres::Error| SchemaError::Postgres(describe(&e));
    let mut tx = client.transaction().map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK_KEY])
        .map_err(pg)?;
    tx.batch_execute(CREATE).map_err(pg)?;
    tx.batch_execute(keys::CREATE).map_err(pg)?;
    tx.commit().map_err(pg)?;
    check_compatible(client)
}

/// Checks that `mega` has `id bigint` and `num1`..`num6 smallint` (binary `COPY` needs
/// the exact types), and that any other column can be left out of an insert.
fn check_compatible(client: &mut Client) -> Result<(), SchemaError> {
    let rows = client
        .query(
            "SELECT column_name::text, data_type::text, is_nullable::text = 'YES', \
             column_default IS NOT NULL FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'mega'",
            &[],
        )
        .map_err(|e| SchemaError::Postgres(describe(&e)))?;
    let columns = rows
        .iter()
        .map(column_of)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SchemaError::Postgres(describe(&e)))?;
    let find = |name: &str| columns.iter().find(|c| c.name == name);
    let wanted = std::iter::once(("id".to_owned(), "bigint"))
        .chain((1..=6).map(|i| (format!("num{i}"), "smallint")));
    for (name, want) in wanted {
        match find(&name) {
            Some(column) if column.data_type == want => {}
            Some(column) => {
                return Err(SchemaError::IncompatiblePostgres(format!(
                    "{name} has type {}, not {want}",
                    column.data_type
                )));
            }
            None => {
                return Err(SchemaError::IncompatiblePostgres(format!(
                    "there is no column {name}"
                )));
            }
        }
    }
    let known = |name: &str| name == "id" || (1..=6).any(|i| name == format!("num{i}"));
    if let Some(column) = columns
        .iter()
        .find(|c| !known(&c.name) && !c.nullable && !c.has_default)
    {
        return Err(SchemaError::IncompatiblePostgres(format!(
            "column {} is NOT NULL without a default, so loadlab cannot insert",
            column.name
        )));
    }
    Ok(())
}

/// One column of `mega`, as `information_schema` describes it.
struct Column {
    name: String,
    data_type: String,
    nullable: bool,
    has_default: bool,
}

fn column_of(row: &postgres::Row) -> Result<Column, postgres::Error> {
    Ok(Column {
        name: row.try_get(0)?,
        data_type: row.try_get(1)?,
        nullable: row.try_get(2)?,
        has_default: row.try_get(3)?,
    })
}
