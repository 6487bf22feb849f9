//! Connecting, quoting and telling a passing failure from a permanent one.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::connector::TaskError;

/// Connects to `url` (`postgres://user:password@host:port/database` or key=value pairs)
/// and drives the connection on its own task.
pub(crate) async fn connect(url: &str) -> Result<Client, TaskError> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls).await.map_err(|e| classify(&e, "cannot connect to PostgreSQL"))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!("PostgreSQL connection ended: {error}");
        }
    });
    Ok(client)
}

/// Whether an error is worth retrying: the connection (class 08), the server shutting
/// down or out of resources, a serialization failure or deadlock, or no SQLSTATE at all
/// (the socket failed).
pub(crate) fn is_transient(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            matches!(class, "08" | "53" | "57" | "58")
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
        }
    }
}

/// A PostgreSQL error as a task error, with its SQLSTATE and the server's message.
pub(crate) fn classify(error: &tokio_postgres::Error, context: &str) -> TaskError {
    let message = describe(error, context);
    if is_transient(error) { TaskError::Retriable(message) } else { TaskError::Fatal(message) }
}

pub(crate) fn describe(error: &tokio_postgres::Error, context: &str) -> String {
    match error.as_db_error() {
        Some(db) => format!("{context}: {} (SQLSTATE {})", db.message(), db.code().code()),
        None => format!("{context}: {error}"),
    }
}

/// An identifier quoted for SQL: `orders` is `"orders"`, `a"b` is `"a""b"`.
pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// A possibly schema-qualified table name, each part quoted: `public.orders` is
/// `"public"."orders"`.
pub(crate) fn quote_table(name: &str) -> String {
    name.split('.').map(quote).collect::<Vec<_>>().join(".")
}

/// The parts of a table name as `(schema, table)`, the schema `None` when not given.
pub(crate) fn split_table(name: &str) -> (Option<&str>, &str) {
    match name.split_once('.') {
        Some((schema, table)) => (Some(schema), table),
        None => (None, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("orders"), "\"orders\"");
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_table("shop.Orders"), "\"shop\".\"Orders\"");
        assert_eq!(split_table("shop.orders"), (Some("shop"), "orders"));
        assert_eq!(split_table("orders"), (None, "orders"));
    }
}
