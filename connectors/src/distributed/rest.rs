//! Kafka Connect's REST API, answered by any worker: configs go to the configs topic
//! (which every worker reads), statuses come from the status topic.
//!
//! | Request | Answer |
//! | --- | --- |
//! | `GET /` | the worker's version |
//! | `GET /connectors[?expand=status\|info]` | names, or names with status / info |
//! | `POST /connectors` `{"name", "config"}` | 201 with the connector; 409 if it exists |
//! | `GET /connectors/{name}` | name, config, tasks, type |
//! | `GET` / `PUT /connectors/{name}/config` | the config; PUT creates (201) or updates (200) |
//! | `GET /connectors/{name}/status` | connector and task states, worker ids, traces |
//! | `GET /connectors/{name}/tasks` | task ids and configs |
//! | `POST /connectors/{name}/restart[?includeTasks&onlyFailed]` | 204, or 202 with tasks (KIP-745) |
//! | `POST /connectors/{name}/tasks/{id}/restart` | 204 |
//! | `PUT /connectors/{name}/pause`, `/resume` | 202 |
//! | `DELETE /connectors/{name}` | 204 |
//! | `GET /connector-plugins` | class, type, version |
//! | `PUT /connector-plugins/{class}/config/validate` | Kafka's validation shape, every problem |
//!
//! Errors are `{"error_code": <HTTP status>, "message": ...}`, as Kafka Connect sends them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::Shared;
use crate::config::{ConfigError, ConnectorConfig};
use crate::connector::ConnectorType;
use crate::plugins;
use crate::runtime::status::State as TaskState;
use crate::runtime::{self, Runtime, RuntimeError, Target};

type Worker = Arc<Shared>;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error_code": status.as_u16(), "message": message.to_string() }))).into_response()
}

fn not_found(name: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("Connector {name} not found"))
}

fn store_failure(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e)
}

/// The router for a worker.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/", get(root))
        .route("/connectors", get(list).post(create))
        .route("/connectors/{name}", get(info).delete(delete))
        .route("/connectors/{name}/config", get(config).put(put_config))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/restart", post(restart))
        .route("/connectors/{name}/tasks/{id}/restart", post(restart_task))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connector-plugins", get(plugin_list))
        .route("/connector-plugins/{class}/config/validate", put(validate))
        .with_state(shared)
}

async fn root() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION"), "commit": "", "kafka_cluster_id": "headwater" }))
}

fn type_name(config: &ConnectorConfig) -> &'static str {
    match plugins::find(&config.class).map(|p| p.connector_type) {
        Some(ConnectorType::Source) => "source",
        Some(ConnectorType::Sink) => "sink",
        None => "unknown",
    }
}

async fn info_value(config: &ConnectorConfig) -> Value {
    let count = Runtime::task_configs(config).await.map_or(0, |t| t.len());
    let tasks: Vec<Value> = (0..count).map(|id| json!({ "connector": config.name, "task": id })).collect();
    json!({ "name": config.name, "config": config.settings, "tasks": tasks, "type": type_name(config) })
}

fn status_value(shared: &Shared, config: &ConnectorConfig) -> Value {
    let tasks = shared.statuses.tasks(&config.name);
    let paused = shared.configs.snapshot().targets.get(&config.name) == Some(&Target::Paused);
    let state = if paused {
        "PAUSED"
    } else if !tasks.is_empty() && tasks.iter().all(|t| t.state == TaskState::Failed) {
        "FAILED"
    } else if tasks.is_empty() {
        "UNASSIGNED"
    } else {
        "RUNNING"
    };
    json!({
        "name": config.name,
        "connector": { "state": state, "worker_id": shared.url },
        "tasks": tasks,
        "type": type_name(config),
    })
}

async fn list(State(shared): State<Worker>, Query(query): Query<HashMap<String, String>>) -> Response {
    let configs = shared.configs.snapshot();
    let expand: Vec<&str> = query.get("expand").map(|e| e.split(',').collect()).unwrap_or_default();
    if expand.is_empty() {
        return Json(configs.connectors.keys().collect::<Vec<_>>()).into_response();
    }
    let mut out = serde_json::Map::new();
    for (name, config) in &configs.connectors {
        let mut entry = serde_json::Map::new();
        if expand.contains(&"status") {
            entry.insert("status".into(), status_value(&shared, config));
        }
        if expand.contains(&"info") {
            entry.insert("info".into(), info_value(config).await);
        }
        out.insert(name.clone(), Value::Object(entry));
    }
    Json(Value::Object(out)).into_response()
}

/// A config from the request, checked: the config, or why it is refused (a 400).
fn checked(name: &str, mut settings: BTreeMap<String, String>) -> Result<ConnectorConfig, String> {
    if let Some(given) = settings.get("name")
        && given != name
    {
        return Err(format!("Connector name configuration ({given}) doesn't match connector name in the URL ({name})"));
    }
    settings.insert("name".into(), name.to_string());
    let config = ConnectorConfig::from_settings(settings).map_err(|e| e.to_string())?;
    runtime::validate(&config).map_err(|e| e.to_string())?;
    Ok(config)
}

/// Values of a JSON object as Kafka Connect keeps them: strings.
fn settings(value: &Value) -> Option<BTreeMap<String, String>> {
    let object = value.as_object()?;
    Some(
        object
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect(),
    )
}

async fn create(State(shared): State<Worker>, body: Option<Json<Value>>) -> Response {
    let Some(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "the body must be JSON: {\"name\": ..., \"config\": {...}}");
    };
    let Some(name) = body.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "a connector needs a name");
    };
    let Some(settings) = body.get("config").and_then(settings) else {
        return error(StatusCode::BAD_REQUEST, "a connector needs a config object");
    };
    if shared.configs.snapshot().connectors.contains_key(name) {
        return error(StatusCode::CONFLICT, format!("Connector {name} already exists"));
    }
    let config = match checked(name, settings) {
        Ok(config) => config,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if let Err(e) = shared.configs.put_connector(name, Some(&config)).await {
        return store_failure(e);
    }
    (StatusCode::CREATED, Json(info_value(&config).await)).into_response()
}

async fn info(State(shared): State<Worker>, Path(name): Path<String>) -> Response {
    match shared.configs.snapshot().connectors.get(&name) {
        Some(config) => Json(info_value(config).await).into_response(),
        None => not_found(&name),
    }
}

async fn config(State(shared): State<Worker>, Path(name): Path<String>) -> Response {
    match shared.configs.snapshot().connectors.get(&name) {
        Some(config) => Json(&config.settings).into_response(),
        None => not_found(&name),
    }
}

async fn put_config(State(shared): State<Worker>, Path(name): Path<String>, body: Option<Json<Value>>) -> Response {
    let Some(settings) = body.and_then(|Json(b)| settings(&b)) else {
        return error(StatusCode::BAD_REQUEST, "the body must be a JSON object of settings");
    };
    let existed = shared.configs.snapshot().connectors.contains_key(&name);
    let config = match checked(&name, settings) {
        Ok(config) => config,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if let Err(e) = shared.configs.put_connector(&name, Some(&config)).await {
        return store_failure(e);
    }
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    (status, Json(info_value(&config).await)).into_response()
}

async fn status(State(shared): State<Worker>, Path(name): Path<String>) -> Response {
    match shared.configs.snapshot().connectors.get(&name) {
        Some(config) => Json(status_value(&shared, config)).into_response(),
        None => not_found(&name),
    }
}

async fn tasks(State(shared): State<Worker>, Path(name): Path<String>) -> Response {
    let Some(config) = shared.configs.snapshot().connectors.get(&name).cloned() else { return not_found(&name) };
    match Runtime::task_configs(&config).await {
        Ok(tasks) => {
            let out: Vec<Value> = tasks
                .iter()
                .enumerate()
                .map(|(id, t)| json!({ "id": { "connector": name, "task": id }, "config": t.settings }))
                .collect();
            Json(out).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn restart(
    State(shared): State<Worker>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(config) = shared.configs.snapshot().connectors.get(&name).cloned() else { return not_found(&name) };
    let flag = |k: &str| query.get(k).is_some_and(|v| v == "true");
    let (include_tasks, only_failed) = (flag("includeTasks"), flag("onlyFailed"));
    // Without includeTasks, Kafka restarts the connector object only; here that has no
    // state of its own, so its tasks are restarted, which is what users want from it.
    if let Err(e) = shared.configs.put_restart(&name, true, only_failed).await {
        return store_failure(e);
    }
    if include_tasks || only_failed {
        (StatusCode::ACCEPTED, Json(status_value(&shared, &config))).into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

async fn restart_task(State(shared): State<Worker>, Path((name, id)): Path<(String, u32)>) -> Response {
    let Some(config) = shared.configs.snapshot().connectors.get(&name).cloned() else { return not_found(&name) };
    if Runtime::task_configs(&config).await.map_or(0, |t| t.len()) <= id as usize {
        return error(StatusCode::NOT_FOUND, format!("Task {name}-{id} not found"));
    }
    // Restarts go through the configs topic, where the task's worker sees them.
    if let Err(e) = shared.configs.put_restart(&name, true, false).await {
        return store_failure(e);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn set_target(shared: &Shared, name: &str, target: Target) -> Response {
    if !shared.configs.snapshot().connectors.contains_key(name) {
        return not_found(name);
    }
    match shared.configs.put_target(name, target).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => store_failure(e),
    }
}

async fn pause(State(shared): State<Worker>, Path(name): Path<String>) -> Response {
    set_target(&shared, &name, Target::Paused).await
}

async fn resume(State(shared): State<Worker>, Path(name): Path<String>) -> Response {
    set_target(&shared, &name, Target::Running).await
}

async fn delete(State(shared): State<Worker>, Path(name): Path<String>) -> Response {
    if !shared.configs.snapshot().connectors.contains_key(&name) {
        return not_found(&name);
    }
    if let Err(e) = shared.configs.put_connector(&name, None).await {
        return store_failure(e);
    }
    for status in shared.statuses.tasks(&name) {
        let _ = shared.statuses.publish(&name, status.id, None).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn plugin_list() -> Json<Value> {
    let plugins: Vec<Value> = plugins::all()
        .iter()
        .map(|p| json!({ "class": p.class, "type": p.connector_type, "version": env!("CARGO_PKG_VERSION") }))
        .collect();
    Json(Value::Array(plugins))
}

/// Kafka's validation answer: every setting with its definition and errors.
async fn validate(Path(class): Path<String>, body: Option<Json<Value>>) -> Response {
    let Some(mut settings) = body.and_then(|Json(b)| settings(&b)) else {
        return error(StatusCode::BAD_REQUEST, "the body must be a JSON object of settings");
    };
    let Some(plugin) = plugins::find(&class).or_else(|| {
        let probe = ConnectorConfig::from_settings(BTreeMap::from([
            ("name".into(), "probe".into()),
            ("connector.class".into(), class.clone()),
        ]))
        .ok()?;
        plugins::find(&probe.class)
    }) else {
        return error(StatusCode::NOT_FOUND, format!("unknown connector class {class}"));
    };
    settings.entry("connector.class".into()).or_insert_with(|| class.clone());
    settings.entry("name".into()).or_insert_with(|| "validate".into());
    let problems: Vec<ConfigError> = match ConnectorConfig::from_settings(settings.clone()) {
        Ok(config) => match runtime::validate(&config) {
            Ok(_) => Vec::new(),
            Err(RuntimeError::Invalid(errors)) => errors,
            Err(other) => vec![ConfigError::Invalid {
                connector: config.name.clone(),
                name: "connector.class".into(),
                value: class.clone(),
                reason: other.to_string(),
            }],
        },
        Err(e) => vec![e],
    };
    let setting_of = |e: &ConfigError| match e {
        ConfigError::Missing { name, .. } | ConfigError::Invalid { name, .. } => name.clone(),
        _ => String::new(),
    };
    let mut names: Vec<String> =
        plugin.definition.settings.iter().map(|s| s.name.split('|').next().unwrap_or(s.name).to_string()).collect();
    for problem in &problems {
        let name = setting_of(problem);
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    let configs: Vec<Value> = names
        .iter()
        .map(|name| {
            let definition = plugin.definition.settings.iter().find(|s| s.name.split('|').any(|n| n == name));
            let errors: Vec<String> =
                problems.iter().filter(|p| setting_of(p) == *name).map(ToString::to_string).collect();
            json!({
                "definition": definition.map_or_else(|| json!({ "name": name }), |d| json!({
                    "name": name, "type": d.kind, "required": d.default.is_none(),
                    "default_value": d.default, "documentation": d.doc,
                })),
                "value": { "name": name, "value": settings.get(name), "errors": errors },
            })
        })
        .collect();
    Json(json!({ "name": plugin.class, "error_count": problems.len(), "groups": ["Common"], "configs": configs }))
        .into_response()
}
