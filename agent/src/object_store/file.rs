//! `file://DIR`: objects as files under a directory. A put writes a temporary file, fsyncs it,
//! links it into place (which, unlike a rename, never replaces an existing object) and fsyncs
//! the directory, so an object is either whole or absent after a crash.

use std::fs;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{ObjectMeta, ObjectStore, StorageError, check_key};

const TMP_MARK: &str = ".tmp-";

/// Objects as files under a local directory: one machine, or a shared file system.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store under directory `dir`, created if missing. Puts write a temporary file and
    /// rename it into place, so readers see whole objects or none.
    pub async fn open(dir: &str) -> Result<FileStore, StorageError> {
        if dir.is_empty() {
            return Err(StorageError::InvalidUrl {
                url: format!("file://{dir}"),
                reason: "no directory given".into(),
            });
        }
        let root = PathBuf::from(dir);
        let r = root.clone();
        blocking("create", dir.to_string(), move || fs::create_dir_all(&r)).await?;
        Ok(FileStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    key: String,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound(key)),
        Ok(Err(e)) if op == "put" && e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(StorageError::AlreadyExists(key))
        }
        Ok(Err(source)) => Err(StorageError::Io { op, key, source }),
        Err(join) => Err(StorageError::Io {
            op,
            key,
            source: std::io::Error::other(join.to_string()),
        }),
    }
}

fn put_sync(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    let tmp = dir.join(format!("{name}{TMP_MARK}{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        // A hard link never replaces an existing name (EEXIST), where a rename would.
        fs::hard_link(&tmp, path)?;
        fs::remove_file(&tmp)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn list_sync(root: &Path, prefix: &str) -> std::io::Result<Vec<ObjectMeta>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let key = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ty = entry.file_type()?;
            if ty.is_dir() {
                // Only descend where keys could still match the prefix.
                if prefix.starts_with(&format!("{key}/")) || key.starts_with(prefix) {
                    stack.push((entry.path(), key));
                }
            } else if ty.is_file() && key.starts_with(prefix) && !name.contains(TMP_MARK) {
                out.push(ObjectMeta {
                    key,
                    size: entry.metadata()?.len(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

#[async_trait::async_trait]
impl ObjectStore for FileStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let path = self.path(key)?;
        blocking("put", key.to_string(), move || put_sync(&path, &data)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let path = self.path(key)?;
        let owned_key = key.to_string();
        let (start, end) = (range.start, range.end.max(range.start));
        let read = blocking("get", key.to_string(), move || {
            let f = fs::File::open(&path)?;
            let size = f.metadata()?.len();
            if end > size {
                return Ok(Err(size));
            }
            let mut buf = vec![0u8; (end - start) as usize];
            f.read_exact_at(&mut buf, start)?;
            Ok(Ok(Bytes::from(buf)))
        })
        .await?;
        read.map_err(|size| StorageError::RangeOutOfBounds {
            key: owned_key,
            start,
            end,
            size,
        })
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = self.path(key)?;
        blocking("get", key.to_string(), move || {
            fs::read(&path).map(Bytes::from)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let root = self.root.clone();
        let p = prefix.to_string();
        blocking("list", prefix.to_string(), move || list_sync(&root, &p)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match blocking("delete", key.to_string(), move || fs::remove_file(&path)).await {
            Err(StorageError::NotFound(_)) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::FileStore::open(dir.path().to_str().unwrap())
            .await
            .unwrap();
        crate::object_store::conformance::run(&store).await;
    }

    #[tokio::test]
    async fn a_failed_put_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::FileStore::open(dir.path().to_str().unwrap())
            .await
            .unwrap();
        // A directory where the object should go makes the link fail.
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        use super::ObjectStore;
        assert!(
            store
                .put("a/b", bytes::Bytes::from_static(b"x"))
                .await
                .is_err()
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("b")]);
    }
}
