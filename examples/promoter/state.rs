//! Where the promoter keeps its state (`--state`): a directory (the file store, one file
//! per project) or a PostgreSQL database (`postgres://...`), which several promoter
//! replicas may share. Git mirrors and promotion work directories live on local disk
//! either way (`--work-dir`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kargo::core::pipeline::{FileStore, StateStore};

use crate::cli::{Failure, Result};

/// Where the state lives.
#[derive(Debug, Clone)]
pub(crate) enum StateLocation {
    /// A directory.
    Dir(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl StateLocation {
    /// Reads `--state`: a `postgres://` or `postgresql://` URL, else a directory.
    pub(crate) fn parse(value: &str) -> Self {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Self::Postgres(value.to_owned())
        } else {
            Self::Dir(PathBuf::from(value))
        }
    }

    /// Where git mirrors and work directories go: `--work-dir`, else the state
    /// directory, else (with a database) `./.kargo-work`.
    pub(crate) fn work_dir(&self, explicit: Option<&Path>) -> PathBuf {
        match (explicit, self) {
            (Some(dir), _) => dir.to_owned(),
            (None, Self::Dir(dir)) => dir.clone(),
            (None, Self::Postgres(_)) => PathBuf::from("./.kargo-work"),
        }
    }

    /// Opens the store. A database that cannot be reached, refuses the credentials or
    /// holds a newer schema is bad input (exit status 2), named without its password.
    pub(crate) async fn open(&self) -> Result<Arc<dyn StateStore>> {
        match self {
            Self::Dir(dir) => Ok(Arc::new(
                FileStore::open(dir).map_err(|e| Failure::Runtime(e.to_string()))?,
            )),
            Self::Postgres(url) => {
                let store = kargo::postgres::PostgresStore::connect(
                    url,
                    kargo::postgres::PostgresOptions::default(),
                )
                .await
                .map_err(|e| Failure::Input(format!("cannot open the state: {e}")))?;
                Ok(Arc::new(store))
            }
        }
    }
}
