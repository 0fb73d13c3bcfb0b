//! The store contract every [`EventStore`] keeps, as a function each
//! implementation's tests call (feature `contract`).

use crate::envelope::ChainVerifier;
use crate::*;

pub fn user() -> Actor {
    Actor::User {
        uid: 1000,
        name: "anna".into(),
    }
}

pub fn ev(batch: &str) -> Event {
    Event::BatchStopped {
        batch: batch.into(),
    }
}

/// Appends, refusals, reads by sequence and by stream, and the chain,
/// on an empty store.
pub async fn contract(store: &dyn EventStore) {
    assert_eq!(store.head(), 0);
    let a = store
        .append(
            "batch/a",
            ExpectedVersion::NoStream,
            user(),
            vec![ev("a"), ev("a")],
        )
        .await
        .unwrap();
    assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(a[1].stream_version, 2);
    assert_eq!(a[0].actor, user());
    assert_eq!(a[0].event_type, "BatchStopped");

    // A stale expected version is refused and changes nothing.
    let err = store
        .append("batch/a", ExpectedVersion::Exact(1), user(), vec![ev("a")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::WrongVersion { actual: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("batch/a is at version 2"));
    let err = store
        .append("batch/a", ExpectedVersion::NoStream, user(), vec![ev("a")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongVersion { .. }));
    assert_eq!(store.head(), 2);

    store
        .append(
            "batch/b",
            ExpectedVersion::Any,
            Actor::Engine,
            vec![ev("b")],
        )
        .await
        .unwrap();
    store
        .append("batch/a", ExpectedVersion::Exact(2), user(), vec![ev("a")])
        .await
        .unwrap();
    assert!(matches!(
        store
            .append("", ExpectedVersion::Any, user(), vec![ev("x")])
            .await,
        Err(StoreError::BadStream(_))
    ));
    assert!(matches!(
        store
            .append("batch/a", ExpectedVersion::Any, user(), vec![])
            .await,
        Err(StoreError::Empty)
    ));

    assert_eq!(store.head(), 4);
    assert_eq!(store.stream_version("batch/a"), 3);
    assert_eq!(store.stream_version("batch/zzz"), 0);
    let a = store.read_stream("batch/a", 2).unwrap();
    assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 4]);
    let all: Vec<_> = store.read_all(3).map(Result::unwrap).collect();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(all.windows(2).all(|w| w[0].time_us <= w[1].time_us));

    let mut chain = ChainVerifier::new();
    for r in store.read_raw(0) {
        let r = r.unwrap();
        let env = codec::decode(&r.bytes).unwrap();
        assert_eq!(env.seq, r.seq);
        chain.check(&env, &r.bytes).unwrap();
    }
}
