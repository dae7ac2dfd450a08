//! Persistent storage of the service: records in an embedded database
//! behind the [`Store`] trait, large blobs (artifacts, recorded runs) as
//! content-addressed files written atomically.

mod api;
mod files;
mod redb;

pub use api::{ModelRecord, Store, StoreError, TaskRecord, TaskResult, TaskStatus};
pub use files::Files;
pub use redb::RedbStore;
