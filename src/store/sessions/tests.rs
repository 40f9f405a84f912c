use secrecy::SecretBox;

use super::*;

fn open(dir: &tempfile::TempDir) -> SessionStore {
    SessionStore::open_sqlite(
        &dir.path().join("sessions.db"),
        Cipher::new(&SecretBox::new(Box::new([3; 32]))),
    )
    .unwrap()
}

/// What every backend must do: the tests below run these on SQLite, `store::postgres`'s on
/// PostgreSQL. `other` is a second handle on the same rows (another process or replica).
pub(crate) mod contract {
    use super::*;

    pub(crate) async fn round_trip(store: &SessionStore) {
        let user = Uuid::new_v4();
        let id = store.create(user).await.unwrap();
        assert_eq!(
            id.expose_cookie_value().len(),
            43,
            "32 bytes of URL-safe base64"
        );
        assert_eq!(
            store.resolve(id.expose_cookie_value()).await.unwrap(),
            Some(user)
        );
        assert_eq!(store.resolve("not-a-session").await.unwrap(), None);
        assert!(store.end(id.expose_cookie_value()).await.unwrap());
        assert_eq!(store.resolve(id.expose_cookie_value()).await.unwrap(), None);
        assert!(!store.end(id.expose_cookie_value()).await.unwrap());
        store.ping().await.unwrap();
    }

    pub(crate) async fn sessions_expire_after_an_hour(store: &SessionStore) {
        let user = Uuid::new_v4();
        let t0 = 1_800_000_000;
        let id = store.create_at(user, t0).await.unwrap();
        let cookie = id.expose_cookie_value();
        assert_eq!(
            store.resolve_at(cookie, t0 + 3599).await.unwrap(),
            Some(user)
        );
        assert_eq!(store.resolve_at(cookie, t0 + 3600).await.unwrap(), None);
        // Resolving an expired session removed it: it stays gone even at an earlier clock.
        assert_eq!(store.resolve_at(cookie, t0).await.unwrap(), None);

        let a = store.create_at(user, t0).await.unwrap();
        let _b = store.create_at(user, t0 + 100).await.unwrap();
        assert_eq!(store.purge_expired_at(t0 + 3650).await.unwrap(), 1);
        assert_eq!(
            store.resolve_at(a.expose_cookie_value(), t0).await.unwrap(),
            None
        );
    }

    pub(crate) async fn a_state_is_spent_once_everywhere(
        store: &SessionStore,
        other: &SessionStore,
    ) {
        let now = 1_800_000_000;
        assert!(
            store
                .spend_state_at("1:abc:sig", now + 300, now)
                .await
                .unwrap()
        );
        assert!(
            !store
                .spend_state_at("1:abc:sig", now + 300, now + 1)
                .await
                .unwrap()
        );
        assert!(
            store
                .spend_state_at("1:def:sig", now + 300, now + 1)
                .await
                .unwrap()
        );
        assert!(
            !other
                .spend_state_at("1:abc:sig", now + 300, now + 2)
                .await
                .unwrap()
        );
        // After it expired the record may go, and the state verifies no more anyway.
        assert!(
            other
                .spend_state_at("1:ghi:sig", now + 900, now + 600)
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn create_resolve_end_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    contract::round_trip(&open(&dir)).await;
}

#[tokio::test]
async fn sessions_expire_after_an_hour_and_are_purged() {
    let dir = tempfile::tempdir().unwrap();
    contract::sessions_expire_after_an_hour(&open(&dir)).await;
}

#[tokio::test]
async fn only_a_hash_of_the_session_id_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let user = Uuid::new_v4();
    let id = store.create(user).await.unwrap();
    drop(store);
    for name in ["sessions.db", "sessions.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(name)) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(id.expose_cookie_value()),
                "{name} holds the session id"
            );
            assert!(
                !text.contains(&user.to_string()),
                "{name} holds the UUID in plaintext"
            );
        }
    }
}

#[tokio::test]
async fn a_state_can_be_spent_once() {
    let dir = tempfile::tempdir().unwrap();
    // A second handle on the same file (another process) sees the spend too.
    contract::a_state_is_spent_once_everywhere(&open(&dir), &open(&dir)).await;
}

#[tokio::test]
async fn a_session_sealed_under_a_rotated_away_key_has_ended_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let key = |byte: u8| SecretBox::new(Box::new([byte; 32]));
    let user = Uuid::new_v4();
    let old = SessionStore::open_sqlite(&path, Cipher::new(&key(1))).unwrap();
    let id = old.create(user).await.unwrap();
    let cookie = id.expose_cookie_value();
    // The old key still listed: the session holds.
    let rotating =
        SessionStore::open_sqlite(&path, Cipher::with_previous(&key(2), &[key(1)])).unwrap();
    assert_eq!(rotating.resolve(cookie).await.unwrap(), Some(user));
    // Dropped: the merchant logs in again, as after an expiry; no error.
    let rotated = SessionStore::open_sqlite(&path, Cipher::new(&key(2))).unwrap();
    assert_eq!(rotated.resolve(cookie).await.unwrap(), None);
}
