//! The blob side of the data directory.
//!
//! ```text
//! DATA/opml.redb            the records (RedbStore)
//! DATA/models/<model id>/   module.wasm, meta.json (Artifact::save: written
//!                           to a temporary sibling, fsynced, renamed)
//! DATA/runs/<task id>/      a recorded run (trace.bin, checkpoints,
//!                           manifest.json), recorded into a temporary
//!                           sibling and renamed when complete
//! DATA/tmp/                 work files; emptied on start
//! ```
//!
//! Ids are content hashes, so a directory that exists under its final name
//! is complete and never changes.

use std::path::{Path, PathBuf};

/// Paths of the data directory.
#[derive(Clone, Debug)]
pub struct Files {
    root: PathBuf,
}

impl Files {
    /// Creates the layout under `root` and clears leftovers of an interrupted
    /// run (temporary files and half-written directories). Open the database
    /// (which locks the directory) first.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        let f = Self {
            root: root.to_path_buf(),
        };
        for d in [f.root.join("models"), f.root.join("runs")] {
            std::fs::create_dir_all(&d)?;
            for e in std::fs::read_dir(&d)? {
                let e = e?;
                if e.file_name().to_string_lossy().starts_with('.') {
                    std::fs::remove_dir_all(e.path())?;
                }
            }
        }
        let tmp = f.tmp();
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(tmp)?;
        Ok(f)
    }

    pub fn db(&self) -> PathBuf {
        Self::db_path(&self.root)
    }

    /// The database file of the data directory `root`.
    pub fn db_path(root: &Path) -> PathBuf {
        root.join("opml.redb")
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn model_dir(&self, id: &str) -> PathBuf {
        self.root.join("models").join(id)
    }

    pub fn run_dir(&self, task: &str) -> PathBuf {
        self.root.join("runs").join(task)
    }

    /// Where a run is recorded before it is renamed into [`Files::run_dir`].
    pub fn run_tmp_dir(&self, task: &str) -> PathBuf {
        self.root.join("runs").join(format!(".{task}.partial"))
    }

    /// Moves a finished recording into place (rename, then fsync the parent).
    pub fn publish_run(&self, task: &str) -> std::io::Result<()> {
        let dst = self.run_dir(task);
        if dst.exists() {
            std::fs::remove_dir_all(&dst)?;
        }
        std::fs::rename(self.run_tmp_dir(task), &dst)?;
        if let Ok(d) = std::fs::File::open(self.root.join("runs")) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
