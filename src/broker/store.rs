//! Broker state: one trait, two stores. The file store (the laptop default) keeps one JSON
//! file per record, written atomically; the DynamoDB store (production, the table the
//! add-on's prerequisites create) lives in `aws::dynamodb`. Records are small JSON
//! documents keyed `instance/<id>` and `binding/<instance>/<binding>`; no secret is stored.

use anyhow::{Context, Result};
use serde_json::Value;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;

pub trait StateStore: Send + Sync {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Value>>> + Send;
    fn put(&self, key: &str, doc: &Value) -> impl Future<Output = Result<()>> + Send;
    fn delete(&self, key: &str) -> impl Future<Output = Result<()>> + Send;
}

/// A directory of `<key>.json` files (`/` in keys becomes `__`).
pub struct FileStore {
    pub dir: PathBuf,
}

impl FileStore {
    pub fn open(dir: PathBuf) -> Result<FileStore> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
        Ok(FileStore { dir })
    }

    fn path(&self, key: &str) -> PathBuf {
        let safe: String = key
            .chars()
            .map(|c| match c {
                '/' => '~',
                c if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' => c,
                _ => '_',
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }
}

impl StateStore for FileStore {
    async fn get(&self, key: &str) -> Result<Option<Value>> {
        let p = self.path(key);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b)
                    .with_context(|| format!("{} is corrupt", p.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    async fn put(&self, key: &str, doc: &Value) -> Result<()> {
        let p = self.path(key);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .with_context(|| format!("writing in {}", self.dir.display()))?;
        tmp.write_all(&serde_json::to_vec_pretty(doc)?)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&p)
            .with_context(|| format!("writing {}", p.display()))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match std::fs::remove_file(self.path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).context("deleting a state record"),
        }
    }
}

/// Either store, chosen at start-up.
pub enum AnyStore {
    File(FileStore),
    Dynamo(crate::aws::dynamodb::DynamoStore),
}

impl StateStore for AnyStore {
    async fn get(&self, key: &str) -> Result<Option<Value>> {
        match self {
            AnyStore::File(s) => s.get(key).await,
            AnyStore::Dynamo(s) => s.get(key).await,
        }
    }
    async fn put(&self, key: &str, doc: &Value) -> Result<()> {
        match self {
            AnyStore::File(s) => s.put(key, doc).await,
            AnyStore::Dynamo(s) => s.put(key, doc).await,
        }
    }
    async fn delete(&self, key: &str) -> Result<()> {
        match self {
            AnyStore::File(s) => s.delete(key).await,
            AnyStore::Dynamo(s) => s.delete(key).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let s = FileStore::open(d.path().join("state")).unwrap();
        assert!(s.get("instance/a").await.unwrap().is_none());
        s.put("instance/a", &serde_json::json!({"x": 1}))
            .await
            .unwrap();
        assert_eq!(s.get("instance/a").await.unwrap().unwrap()["x"], 1);
        s.delete("instance/a").await.unwrap();
        s.delete("instance/a").await.unwrap();
        assert!(s.get("instance/a").await.unwrap().is_none());
    }
}
