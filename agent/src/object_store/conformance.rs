//! The behaviour every object store must have, written once and run against each backend.

use bytes::Bytes;

use super::{ObjectStore, StorageError};

pub(crate) async fn run(store: &dyn ObjectStore) {
    // Round trip, whole and by range.
    let data = Bytes::from((0..10_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    store.put("data/a/1.obj", data.clone()).await.unwrap();
    assert_eq!(store.get("data/a/1.obj").await.unwrap(), data);
    assert_eq!(
        store.get_range("data/a/1.obj", 100..1100).await.unwrap(),
        data.slice(100..1100)
    );
    assert_eq!(
        store
            .get_range("data/a/1.obj", 9_999..10_000)
            .await
            .unwrap(),
        data.slice(9_999..)
    );

    // A range past the end is an error, not a short read.
    assert!(matches!(
        store.get_range("data/a/1.obj", 9_000..20_000).await,
        Err(StorageError::RangeOutOfBounds { .. })
    ));

    // Missing objects are NotFound.
    assert!(matches!(
        store.get("data/missing").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        store.get_range("data/missing", 0..1).await,
        Err(StorageError::NotFound(_))
    ));

    // An existing object is never replaced: a second put of its key is refused and the
    // first stays whole (keys are unique per writer, so a repeat is another process's).
    store
        .put("data/a/2.obj", Bytes::from_static(b"first"))
        .await
        .unwrap();
    assert!(matches!(
        store.put("data/a/2.obj", Bytes::from_static(b"second")).await,
        Err(StorageError::AlreadyExists(k)) if k == "data/a/2.obj"
    ));
    assert_eq!(store.get("data/a/2.obj").await.unwrap(), "first");

    // Empty objects are objects.
    store.put("data/b/empty", Bytes::new()).await.unwrap();
    assert_eq!(store.get("data/b/empty").await.unwrap(), Bytes::new());

    // List by prefix, in key order, with sizes.
    let listed = store.list("data/a/").await.unwrap();
    let keys: Vec<_> = listed.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, vec!["data/a/1.obj", "data/a/2.obj"]);
    assert_eq!(listed[0].size, 10_000);
    assert_eq!(store.list("data/").await.unwrap().len(), 3);
    assert!(store.list("nothing/").await.unwrap().is_empty());

    // Delete is idempotent.
    store.delete("data/a/1.obj").await.unwrap();
    store.delete("data/a/1.obj").await.unwrap();
    assert!(matches!(
        store.get("data/a/1.obj").await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(store.list("data/a/").await.unwrap().len(), 1);

    // Keys cannot escape the store.
    for bad in ["", "/abs", "a/../b", "a//b", "..", "a/./b"] {
        assert!(
            matches!(
                store.put(bad, Bytes::new()).await,
                Err(StorageError::InvalidKey(_))
            ),
            "{bad:?}"
        );
    }

    // Concurrent puts of distinct objects all land.
    let puts = (0..16).map(|i| {
        let key = format!("data/c/{i:02}");
        async move { store.put(&key, Bytes::from(vec![i as u8; 1000])).await }
    });
    for r in futures::future::join_all(puts).await {
        r.unwrap();
    }
    assert_eq!(store.list("data/c/").await.unwrap().len(), 16);
    assert_eq!(store.get("data/c/07").await.unwrap(), vec![7u8; 1000]);
}
