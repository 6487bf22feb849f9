//! The Postgres wire endpoint (`serve --pg-listen`): psql and Postgres drivers query
//! topics. Simple queries (psql, psycopg2) and the extended protocol (prepared
//! statements with `$n` parameters: JDBC, psycopg 3, asyncpg) both run through the
//! [`SqlEngine`]. Logins use md5 passwords; user, password and database are `headwater`
//! unless configured.
//!
//! Bounded: at most [`PgOptions::max_connections`] connections at once (more wait to be
//! accepted), results stream with backpressure, and a failed query is an error response
//! that leaves the connection usable.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, StreamExt, stream};
use pgwire::api::auth::md5pass::{Md5PasswordAuthStartupHandler, hash_md5_password};
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{NoopQueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::{SqlEngine, SqlError, text};

/// Who may connect, and how many at once.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub user: String,
    pub password: String,
    pub database: String,
    pub max_connections: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            user: "headwater".into(),
            password: "headwater".into(),
            database: "headwater".into(),
            max_connections: 64,
        }
    }
}

/// Accepts Postgres connections on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<SqlEngine>,
    options: PgOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let handlers = Arc::new(Handlers::new(engine, &options));
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "postgres accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let handlers = Arc::clone(&handlers);
        tokio::spawn(async move {
            if let Err(error) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::debug!(%peer, %error, "postgres connection ended with an error");
            }
            drop(permit);
        });
    }
}

struct Handlers {
    startup: Arc<Md5PasswordAuthStartupHandler<Logins, DefaultServerParameterProvider>>,
    queries: Arc<Queries>,
}

impl Handlers {
    fn new(engine: Arc<SqlEngine>, options: &PgOptions) -> Self {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = format!("16.0 (headwater {})", env!("CARGO_PKG_VERSION"));
        let logins = Logins {
            user: options.user.clone(),
            password: options.password.clone(),
            database: options.database.clone(),
        };
        Self {
            startup: Arc::new(Md5PasswordAuthStartupHandler::new(Arc::new(logins), Arc::new(parameters))),
            queries: Arc::new(Queries { engine, parser: Arc::new(NoopQueryParser::new()) }),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::clone(&self.startup)
    }
}

/// The one configured login.
#[derive(Debug)]
struct Logins {
    user: String,
    password: String,
    database: String,
}

#[async_trait]
#[allow(elided_lifetimes_in_paths)] // the trait's own signature, which async_trait expands
impl AuthSource for Logins {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        if user != self.user {
            return Err(PgWireError::InvalidPassword(user.to_string()));
        }
        if let Some(database) = login.database().filter(|d| *d != self.database) {
            return Err(user_error("3D000", format!("database \"{database}\" does not exist")));
        }
        let random = uuid::Uuid::new_v4();
        let salt = &random.as_bytes()[..4];
        Ok(Password::new(Some(salt.to_vec()), hash_md5_password(&self.user, &self.password, salt).into_bytes()))
    }
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".to_string(), code.to_string(), message)))
}

fn sql_error(error: SqlError) -> PgWireError {
    user_error(error.sqlstate(), error.to_string())
}

struct Queries {
    engine: Arc<SqlEngine>,
    parser: Arc<NoopQueryParser>,
}

/// Session statements drivers send that a read-only engine has nothing to do for
/// (`SET`, transactions): acknowledged, as Postgres would.
fn session_statement(sql: &str) -> Option<&'static str> {
    let first = sql.split_whitespace().next()?.to_ascii_uppercase();
    let tag = match first.trim_end_matches(';') {
        "SET" if !sql.to_ascii_lowercase().contains("datafusion.") => "SET",
        "BEGIN" | "START" => "BEGIN",
        "COMMIT" | "END" => "COMMIT",
        "ROLLBACK" | "ABORT" => "ROLLBACK",
        "DISCARD" => "DISCARD ALL",
        "DEALLOCATE" => "DEALLOCATE",
        _ => return None,
    };
    Some(tag)
}

impl Queries {
    async fn run(&self, sql: &str, params: Vec<Option<String>>, format: &Format) -> PgWireResult<Response> {
        if let Some(tag) = session_statement(sql) {
            return Ok(Response::Execution(Tag::new(tag)));
        }
        let stream = self.engine.execute_with_params(sql, params).await.map_err(sql_error)?;
        let fields = Arc::new(text::fields(&stream.schema, |i| format.format_for(i)));
        let encode_with = Arc::clone(&fields);
        let rows = stream::unfold(stream.batches, |mut batches| async move {
            let batch = batches.recv().await?;
            Some((batch, batches))
        })
        .flat_map(move |batch| {
            let rows: Vec<PgWireResult<_>> = match batch {
                Ok(batch) => match text::encode_rows(&batch, &encode_with) {
                    Ok(rows) => rows.into_iter().map(Ok).collect(),
                    Err(error) => vec![Err(error)],
                },
                Err(error) => vec![Err(sql_error(error))],
            };
            stream::iter(rows)
        });
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // One statement per query string: DataFusion plans one at a time.
        let statements: Vec<&str> = query.split(';').map(str::trim).filter(|s| !s.is_empty()).collect();
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            match self.run(statement, Vec::new(), &Format::UnifiedText).await {
                Ok(response) => responses.push(response),
                Err(PgWireError::UserError(info)) => {
                    responses.push(Response::Error(info));
                    break;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = String;
    type QueryParser = NoopQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let declared = |i: usize| portal.statement.parameter_types.get(i).cloned().flatten();
        // Binary parameters the client did not type (it asked us to, with Describe): the
        // types the query gives them, as Describe answered.
        let inferred = if (0..portal.parameter_len()).any(|i| declared(i).is_none()) {
            let (_, types) = self.engine.describe(&portal.statement.statement).await.map_err(sql_error)?;
            types
        } else {
            Vec::new()
        };
        let mut params = Vec::with_capacity(portal.parameter_len());
        for i in 0..portal.parameter_len() {
            let ty = declared(i)
                .or_else(|| inferred.get(i).cloned().flatten().map(|t| text::pg_type(&t)))
                .unwrap_or(Type::UNKNOWN);
            params.push(parameter_text(portal, i, &ty)?);
        }
        self.run(&portal.statement.statement, params, &portal.result_column_format).await
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        statement: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if session_statement(&statement.statement).is_some() {
            return Ok(DescribeStatementResponse::new(Vec::new(), Vec::new()));
        }
        let (schema, params) = self.engine.describe(&statement.statement).await.map_err(sql_error)?;
        let params = params.iter().map(|t| t.as_ref().map_or(Type::UNKNOWN, text::pg_type)).collect();
        Ok(DescribeStatementResponse::new(params, text::fields(&schema, |_| FieldFormat::Text)))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if session_statement(&portal.statement.statement).is_some() {
            return Ok(DescribePortalResponse::new(Vec::new()));
        }
        let (schema, _) = self.engine.describe(&portal.statement.statement).await.map_err(sql_error)?;
        let fields: Vec<FieldInfo> = text::fields(&schema, |i| portal.result_column_format.format_for(i));
        Ok(DescribePortalResponse::new(fields))
    }
}

/// A bound parameter as text, whatever format the client sent it in.
fn parameter_text(portal: &Portal<String>, i: usize, ty: &Type) -> PgWireResult<Option<String>> {
    if portal.parameter_format.format_for(i) == FieldFormat::Text || *ty == Type::UNKNOWN {
        return portal.parameter::<String>(i, &Type::TEXT);
    }
    Ok(match *ty {
        Type::BOOL => portal.parameter::<bool>(i, ty)?.map(|v| v.to_string()),
        Type::INT2 => portal.parameter::<i16>(i, ty)?.map(|v| v.to_string()),
        Type::INT4 => portal.parameter::<i32>(i, ty)?.map(|v| v.to_string()),
        Type::INT8 => portal.parameter::<i64>(i, ty)?.map(|v| v.to_string()),
        Type::FLOAT4 => portal.parameter::<f32>(i, ty)?.map(|v| v.to_string()),
        Type::FLOAT8 => portal.parameter::<f64>(i, ty)?.map(|v| v.to_string()),
        _ => portal.parameter::<String>(i, ty)?,
    })
}
