//! Broker state: one trait, two stores, one contract. Records are small JSON documents
//! keyed `instance/<id>` and `binding/<instance>/<binding>`; no secret is stored.
//!
//! The contract: every record has a version; `put` and `delete` name the version the
//! caller read (`None`: the record must not exist) and return `Write::Conflict` when
//! another writer got there first. Two brokers on one store therefore never both create
//! an instance or a binding; the loser re-reads and answers from what the winner wrote.
//!
//! - `FileStore` (the laptop default): one `<key>.json` per record, written atomically
//!   (temporary file, fsync, rename) under an exclusive lock of `<dir>/.lock`, so two
//!   processes on one directory keep the contract too. The file name is an injective,
//!   lower-case encoding of the key, so `instance/ABC` and `instance/abc` stay apart on
//!   a case-insensitive filesystem (macOS, Windows).
//! - `DynamoStore` (production): condition expressions on `aws::dynamodb::Table`.

use crate::aws::dynamodb::{Table, Write};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;

pub trait StateStore: Send + Sync + 'static {
    /// The record and its version.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<(Value, u64)>>> + Send;
    /// Writes `doc` if the record is at `expected` (`None`: absent).
    fn put(
        &self,
        key: &str,
        doc: &Value,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<Write>> + Send;
    /// Deletes the record if it is at `expected`.
    fn delete(&self, key: &str, expected: u64) -> impl Future<Output = Result<Write>> + Send;
}

/// A directory of records.
pub struct FileStore {
    pub dir: PathBuf,
}

/// The file name of `key`: `/` becomes `~`, an upper-case letter `X` becomes `^x`, lower
/// case, digits and `-` stay, anything else is `%HH`. Injective, and no two keys differ
/// only in case, so it is safe on case-insensitive filesystems.
pub fn file_name(key: &str) -> String {
    let mut s = String::with_capacity(key.len() + 5);
    for b in key.bytes() {
        match b {
            b'/' => s.push('~'),
            b'A'..=b'Z' => {
                s.push('^');
                s.push(b.to_ascii_lowercase() as char);
            }
            b'a'..=b'z' | b'0'..=b'9' | b'-' => s.push(b as char),
            _ => s.push_str(&format!("%{b:02x}")),
        }
    }
    s.push_str(".json");
    s
}

impl FileStore {
    pub fn open(dir: PathBuf) -> Result<FileStore> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
        Ok(FileStore { dir })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(file_name(key))
    }

    /// Runs `f` holding the directory's exclusive lock (between processes too).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let p = self.dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .with_context(|| format!("opening {}", p.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", p.display()))?;
        let r = f();
        let _ = lock.unlock();
        r
    }

    /// `{"v": n, "doc": …}`; a file written before versions existed is the bare
    /// document, version 0.
    fn read(&self, key: &str) -> Result<Option<(Value, u64)>> {
        let p = self.path(key);
        match std::fs::read(&p) {
            Ok(b) => {
                let v: Value = serde_json::from_slice(&b)
                    .with_context(|| format!("{} is corrupt (not JSON)", p.display()))?;
                match (v.get("v").and_then(Value::as_u64), v.get("doc")) {
                    (Some(n), Some(doc)) if v.as_object().is_some_and(|o| o.len() == 2) => {
                        Ok(Some((doc.clone(), n)))
                    }
                    _ => Ok(Some((v, 0))),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    fn version(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.read(key)?.map(|(_, v)| v))
    }
}

impl StateStore for FileStore {
    async fn get(&self, key: &str) -> Result<Option<(Value, u64)>> {
        self.read(key)
    }

    async fn put(&self, key: &str, doc: &Value, expected: Option<u64>) -> Result<Write> {
        self.locked(|| {
            if self.version(key)? != expected {
                return Ok(Write::Conflict);
            }
            let p = self.path(key);
            let next = expected.map_or(1, |v| v + 1);
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
                .with_context(|| format!("writing in {}", self.dir.display()))?;
            tmp.write_all(&serde_json::to_vec_pretty(&json!({"v": next, "doc": doc}))?)
                .with_context(|| format!("writing {}", p.display()))?;
            tmp.as_file()
                .sync_all()
                .with_context(|| format!("writing {}", p.display()))?;
            tmp.persist(&p)
                .with_context(|| format!("writing {}", p.display()))?;
            Ok(Write::Done)
        })
    }

    async fn delete(&self, key: &str, expected: u64) -> Result<Write> {
        self.locked(|| {
            if self.version(key)? != Some(expected) {
                return Ok(Write::Conflict);
            }
            let p = self.path(key);
            std::fs::remove_file(&p).with_context(|| format!("deleting {}", p.display()))?;
            Ok(Write::Done)
        })
    }
}

/// The DynamoDB table store.
pub struct DynamoStore(pub Table);

impl StateStore for DynamoStore {
    async fn get(&self, key: &str) -> Result<Option<(Value, u64)>> {
        match self.0.get(key).await? {
            None => Ok(None),
            Some((doc, v)) => Ok(Some((
                serde_json::from_str(&doc)
                    .with_context(|| format!("DynamoDB {}: item {key} is corrupt", self.0.name))?,
                v,
            ))),
        }
    }

    async fn put(&self, key: &str, doc: &Value, expected: Option<u64>) -> Result<Write> {
        self.0
            .put(key, &serde_json::to_string(doc)?, expected)
            .await
    }

    async fn delete(&self, key: &str, expected: u64) -> Result<Write> {
        self.0.delete(key, expected).await
    }
}

/// An in-memory store with the same contract, for unit tests.
#[cfg(test)]
#[derive(Default)]
pub struct MemStore(pub std::sync::Mutex<std::collections::BTreeMap<String, (Value, u64)>>);

#[cfg(test)]
impl StateStore for MemStore {
    async fn get(&self, key: &str) -> Result<Option<(Value, u64)>> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn put(&self, key: &str, doc: &Value, expected: Option<u64>) -> Result<Write> {
        let mut m = self.0.lock().unwrap();
        if m.get(key).map(|x| x.1) != expected {
            return Ok(Write::Conflict);
        }
        m.insert(
            key.to_string(),
            (doc.clone(), expected.map_or(1, |v| v + 1)),
        );
        Ok(Write::Done)
    }
    async fn delete(&self, key: &str, expected: u64) -> Result<Write> {
        let mut m = self.0.lock().unwrap();
        if m.get(key).map(|x| x.1) != Some(expected) {
            return Ok(Write::Conflict);
        }
        m.remove(key);
        Ok(Write::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_keeps_the_contract() {
        let d = tempfile::tempdir().unwrap();
        let s = FileStore::open(d.path().join("state")).unwrap();
        assert!(s.get("instance/a").await.unwrap().is_none());
        assert_eq!(
            s.put("instance/a", &json!({"x": 1}), None).await.unwrap(),
            Write::Done
        );
        assert_eq!(
            s.put("instance/a", &json!({"x": 2}), None).await.unwrap(),
            Write::Conflict,
            "a second create loses"
        );
        let (doc, v) = s.get("instance/a").await.unwrap().unwrap();
        assert_eq!((doc["x"].as_i64(), v), (Some(1), 1));
        assert_eq!(
            s.put("instance/a", &json!({"x": 3}), Some(1))
                .await
                .unwrap(),
            Write::Done
        );
        assert_eq!(
            s.put("instance/a", &json!({"x": 4}), Some(1))
                .await
                .unwrap(),
            Write::Conflict,
            "a stale writer loses"
        );
        assert_eq!(s.delete("instance/a", 1).await.unwrap(), Write::Conflict);
        assert_eq!(s.delete("instance/a", 2).await.unwrap(), Write::Done);
        assert!(s.get("instance/a").await.unwrap().is_none());
        assert_eq!(s.delete("instance/a", 2).await.unwrap(), Write::Conflict);
    }

    #[tokio::test]
    async fn legacy_files_are_version_zero() {
        let d = tempfile::tempdir().unwrap();
        let s = FileStore::open(d.path().to_path_buf()).unwrap();
        std::fs::write(d.path().join("instance~old.json"), r#"{"id": "old"}"#).unwrap();
        let (doc, v) = s.get("instance/old").await.unwrap().unwrap();
        assert_eq!((doc["id"].as_str(), v), (Some("old"), 0));
        assert_eq!(
            s.put("instance/old", &doc, Some(0)).await.unwrap(),
            Write::Done
        );
        assert_eq!(s.get("instance/old").await.unwrap().unwrap().1, 1);
    }

    #[test]
    fn file_names_are_injective_and_case_safe() {
        let keys = [
            "instance/abc",
            "instance/ABC",
            "instance/aBc",
            "instance/a^bc",
            "instance~abc",
            "binding/a/b-c",
            "binding/a-b/c",
            "instance/a.b",
            "instance/a%2eb",
        ];
        let names: Vec<String> = keys.iter().map(|k| file_name(k)).collect();
        let folded: std::collections::BTreeSet<String> =
            names.iter().map(|n| n.to_lowercase()).collect();
        assert_eq!(folded.len(), keys.len(), "{names:?}");
        assert_eq!(file_name("instance/abc"), "instance~abc.json");
        assert_eq!(file_name("instance/ABC"), "instance~^a^b^c.json");
    }
}
