//! [`Store`] on redb.
//!
//! Why redb: pure Rust (no C toolchain, quick to build), ACID with
//! copy-on-write B-trees and a checksummed commit protocol, so a `kill -9`
//! in the middle of a write leaves the last committed transaction intact;
//! one file, no server. SQLite (rusqlite) would do as well but brings C code
//! and a query language the service does not need: records are looked up by
//! id only.
//!
//! Tables: `models` and `tasks` (`id -> JSON record`) and `unfinished`
//! (`task id -> ()`, the index of queued and running tasks).

use super::api::{ModelRecord, Store, StoreError, TaskRecord, TaskStatus};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;

const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const UNFINISHED: TableDefinition<&str, ()> = TableDefinition::new("unfinished");

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// The embedded database (`opml.redb` in the data directory).
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Opens or creates the database at `path` (repairing it after a crash).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(err)?;
        let tx = db.begin_write().map_err(err)?;
        {
            tx.open_table(MODELS).map_err(err)?;
            tx.open_table(TASKS).map_err(err)?;
            tx.open_table(UNFINISHED).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(Self { db })
    }

    fn write_task(
        &self,
        t: &TaskRecord,
        only_if_absent: bool,
    ) -> Result<(TaskRecord, bool), StoreError> {
        let bytes = serde_json::to_vec(t).map_err(err)?;
        let tx = self.db.begin_write().map_err(err)?;
        let out = {
            let mut tasks = tx.open_table(TASKS).map_err(err)?;
            let existing = match tasks.get(t.id.as_str()).map_err(err)? {
                Some(v) => Some(serde_json::from_slice::<TaskRecord>(v.value()).map_err(err)?),
                None => None,
            };
            match existing {
                Some(e) if only_if_absent => (e, false),
                _ => {
                    tasks.insert(t.id.as_str(), bytes.as_slice()).map_err(err)?;
                    let mut unfinished = tx.open_table(UNFINISHED).map_err(err)?;
                    if matches!(t.status, TaskStatus::Queued | TaskStatus::Running) {
                        unfinished.insert(t.id.as_str(), ()).map_err(err)?;
                    } else {
                        unfinished.remove(t.id.as_str()).map_err(err)?;
                    }
                    (t.clone(), true)
                }
            }
        };
        tx.commit().map_err(err)?;
        Ok(out)
    }
}

impl Store for RedbStore {
    fn insert_model(&self, m: &ModelRecord) -> Result<bool, StoreError> {
        let bytes = serde_json::to_vec(m).map_err(err)?;
        let tx = self.db.begin_write().map_err(err)?;
        let new = {
            let mut t = tx.open_table(MODELS).map_err(err)?;
            let exists = t.get(m.id.as_str()).map_err(err)?.is_some();
            if !exists {
                t.insert(m.id.as_str(), bytes.as_slice()).map_err(err)?;
            }
            !exists
        };
        tx.commit().map_err(err)?;
        Ok(new)
    }

    fn model(&self, id: &str) -> Result<Option<ModelRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(MODELS).map_err(err)?;
        t.get(id)
            .map_err(err)?
            .map(|v| serde_json::from_slice(v.value()).map_err(err))
            .transpose()
    }

    fn insert_task(&self, t: &TaskRecord) -> Result<(TaskRecord, bool), StoreError> {
        self.write_task(t, true)
    }

    fn update_task(&self, t: &TaskRecord) -> Result<(), StoreError> {
        self.write_task(t, false).map(|_| ())
    }

    fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(TASKS).map_err(err)?;
        t.get(id)
            .map_err(err)?
            .map(|v| serde_json::from_slice(v.value()).map_err(err))
            .transpose()
    }

    fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let ids: Vec<String> = {
            let tx = self.db.begin_read().map_err(err)?;
            let t = tx.open_table(UNFINISHED).map_err(err)?;
            t.iter()
                .map_err(err)?
                .map(|r| r.map(|(k, _)| k.value().to_string()).map_err(err))
                .collect::<Result<_, _>>()?
        };
        let mut out = Vec::new();
        for id in ids {
            if let Some(t) = self.task(&id)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    fn counts(&self) -> Result<(u64, u64), StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let m = tx.open_table(MODELS).map_err(err)?.len().map_err(err)?;
        let t = tx.open_table(TASKS).map_err(err)?.len().map_err(err)?;
        Ok((m, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TaskStatus;

    fn task(id: &str, status: TaskStatus) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            model_id: "m".into(),
            engine: "native".into(),
            status,
            inputs: vec![vec![1, 2, 3]],
            total_steps: 6,
            error: None,
            result: None,
            created: 0,
            has_trace: false,
        }
    }

    #[test]
    fn tasks_persist_and_the_unfinished_index_follows_status() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            let (t, new) = s.insert_task(&task("a", TaskStatus::Queued)).unwrap();
            assert!(new && t.status == TaskStatus::Queued);
            let (t, new) = s.insert_task(&task("a", TaskStatus::Failed)).unwrap();
            assert!(
                !new && t.status == TaskStatus::Queued,
                "insert keeps the first"
            );
            s.insert_task(&task("b", TaskStatus::Queued)).unwrap();
            s.update_task(&task("b", TaskStatus::Done)).unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        let unfinished: Vec<String> = s
            .unfinished_tasks()
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(unfinished, vec!["a".to_string()]);
        assert_eq!(s.task("b").unwrap().unwrap().status, TaskStatus::Done);
        assert_eq!(s.counts().unwrap(), (0, 2));
        assert!(s.task("c").unwrap().is_none());
    }
}
