//! What each connector and task is doing, in Kafka Connect's states, for the REST API and
//! the logs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A connector's or task's state, with Kafka Connect's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Unassigned,
    Running,
    Paused,
    Failed,
    Restarting,
}

/// One task's status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskStatus {
    pub id: u32,
    pub state: State,
    pub worker_id: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// The statuses of every task this worker runs, shared by the tasks (which report) and
/// the worker (which answers).
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    tasks: Arc<Mutex<BTreeMap<(String, u32), TaskStatus>>>,
}

impl StatusBoard {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, u32), TaskStatus>> {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set(&self, connector: &str, id: u32, worker_id: &str, state: State, trace: Option<String>) {
        let status = TaskStatus { id, state, worker_id: worker_id.to_string(), trace };
        self.lock().insert((connector.to_string(), id), status);
    }

    pub fn remove_connector(&self, connector: &str) {
        self.lock().retain(|(c, _), _| c != connector);
    }

    /// A connector's tasks, by id.
    pub fn tasks(&self, connector: &str) -> Vec<TaskStatus> {
        self.lock().iter().filter(|((c, _), _)| c == connector).map(|(_, s)| s.clone()).collect()
    }

    pub fn task(&self, connector: &str, id: u32) -> Option<TaskStatus> {
        self.lock().get(&(connector.to_string(), id)).cloned()
    }
}
