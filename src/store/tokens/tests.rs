use secrecy::{ExposeSecret, SecretBox, SecretString};

use super::*;

pub(crate) fn cipher(byte: u8) -> Cipher {
    Cipher::new(&SecretBox::new(Box::new([byte; 32])))
}

fn page(id: &str) -> PageId {
    PageId::parse(id).unwrap()
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s)
}

/// What every backend must do: the tests below run these on SQLite, `store::postgres`'s on
/// PostgreSQL. `other_key` is a second store on the same rows under another key.
pub(crate) mod contract {
    use super::*;

    pub(crate) async fn round_trip(store: &TokenStore) {
        let key = TokenKey::page_token(&page("101"));
        assert!(store.get(&key).await.unwrap().is_none());
        for value in ["EAAB-first", "EAAB-second"] {
            store
                .store(&key, &secret(value), TokenKind::Token)
                .await
                .unwrap();
            assert_eq!(
                store.get(&key).await.unwrap().unwrap().expose_secret(),
                value
            );
        }
        assert!(store.delete(&key).await.unwrap());
        assert!(!store.delete(&key).await.unwrap());
        assert!(store.get(&key).await.unwrap().is_none());
    }

    pub(crate) async fn kinds_are_listed_apart_in_key_order(store: &TokenStore) {
        for (key, value, kind) in [
            (TokenKey::page_token(&page("2")), "t2", TokenKind::Token),
            (TokenKey::page_token(&page("1")), "t1", TokenKind::Token),
            (TokenKey::page_uuid(&page("1")), "u1", TokenKind::Uuid),
        ] {
            store.store(&key, &secret(value), kind).await.unwrap();
        }
        let tokens = store.all_of_kind(TokenKind::Token).await.unwrap();
        let listed: Vec<(&str, &str)> = tokens
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        assert_eq!(
            listed,
            [
                ("FACEBOOK_ACCESS_TOKEN_1", "t1"),
                ("FACEBOOK_ACCESS_TOKEN_2", "t2")
            ]
        );
        assert_eq!(tokens[0].0.page_of_token(), Some(page("1")));
        let keys = store.keys_of_kind(TokenKind::Token).await.unwrap();
        assert_eq!(keys, [tokens[0].0.clone(), tokens[1].0.clone()]);

        let uuids = store.all_of_kind(TokenKind::Uuid).await.unwrap();
        assert_eq!(uuids.len(), 1);
        assert_eq!(uuids[0].0.page_of_token(), None);
        // A row that changes kind moves lists.
        let key = TokenKey::page_uuid(&page("1"));
        store
            .store(&key, &secret("t"), TokenKind::Token)
            .await
            .unwrap();
        assert!(store.all_of_kind(TokenKind::Uuid).await.unwrap().is_empty());
        store.ping().await.unwrap();
    }

    pub(crate) async fn another_key_is_a_clear_error_naming_the_row(
        store: &TokenStore,
        other_key: &TokenStore,
    ) {
        let key = TokenKey::page_token(&page("7"));
        store
            .store(&key, &secret("t"), TokenKind::Token)
            .await
            .unwrap();
        assert_eq!(
            undecryptable_key(other_key.get(&key).await).await,
            "FACEBOOK_ACCESS_TOKEN_7"
        );
        assert!(matches!(
            other_key.all_of_kind(TokenKind::Token).await,
            Err(StoreError::Undecryptable { .. })
        ));
    }

    /// `rows` is one backend's rows, seen through stores under different keys.
    pub(crate) async fn rekey_moves_every_row_to_the_current_key(
        rows: impl Fn(Cipher) -> TokenStore,
    ) {
        let key = |byte: u8| SecretBox::new(Box::new([byte; 32]));
        let under_a = rows(cipher(1));
        // From an empty store (another contract may have run on these rows before).
        for kind in [TokenKind::Token, TokenKind::Uuid] {
            for name in under_a.keys_of_kind(kind).await.unwrap() {
                under_a.delete(&name).await.unwrap();
            }
        }
        for id in ["1", "2"] {
            let name = TokenKey::page_token(&page(id));
            under_a
                .store(&name, &secret(id), TokenKind::Token)
                .await
                .unwrap();
        }
        let uuid = TokenKey::page_uuid(&page("1"));
        under_a
            .store(&uuid, &secret("u"), TokenKind::Uuid)
            .await
            .unwrap();
        let stray = TokenKey::page_token(&page("3"));
        rows(cipher(3))
            .store(&stray, &secret("3"), TokenKind::Token)
            .await
            .unwrap();

        let rotating = rows(Cipher::with_previous(&key(2), &[key(1)]));
        assert!(matches!(
            rotating.check_keys().await,
            Err(StoreError::Undecryptable { key }) if key == stray.as_str()
        ));
        let report = rotating.rekey().await.unwrap();
        assert_eq!(report.resealed, 3);
        assert_eq!(report.unopened, [stray.as_str().to_string()]);
        rotating.delete(&stray).await.unwrap();
        let under_b = rows(cipher(2));
        assert_eq!(under_b.check_keys().await.unwrap(), 3);
        let value = under_b
            .get(&TokenKey::page_token(&page("2")))
            .await
            .unwrap();
        assert_eq!(value.unwrap().expose_secret(), "2");
        assert!(
            rows(cipher(1)).check_keys().await.is_err(),
            "A opens nothing now"
        );
    }
}

fn sqlite(dir: &tempfile::TempDir, key: u8) -> TokenStore {
    TokenStore::open_sqlite(&dir.path().join("tokens.db"), cipher(key)).unwrap()
}

#[tokio::test]
async fn store_get_delete_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    contract::round_trip(&sqlite(&dir, 1)).await;
}

#[tokio::test]
async fn all_of_kind_lists_only_that_kind() {
    let dir = tempfile::tempdir().unwrap();
    contract::kinds_are_listed_apart_in_key_order(&sqlite(&dir, 1)).await;
}

#[tokio::test]
async fn a_wrong_key_is_a_clear_error_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    contract::another_key_is_a_clear_error_naming_the_row(&sqlite(&dir, 1), &sqlite(&dir, 2)).await;
}

#[tokio::test]
async fn rekey_moves_every_row_to_the_current_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.db");
    contract::rekey_moves_every_row_to_the_current_key(|cipher| {
        TokenStore::open_sqlite(&path, cipher).unwrap()
    })
    .await;
}

#[tokio::test]
async fn values_survive_reopening_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/folder/tokens.db");
    let key = TokenKey::shop_uuid("demo-store_myshopify_com");
    {
        let store = TokenStore::open_sqlite(&path, cipher(1)).unwrap();
        store
            .store(&key, &secret("uuid-1"), TokenKind::Uuid)
            .await
            .unwrap();
    }
    let store = TokenStore::open_sqlite(&path, cipher(1)).unwrap();
    assert_eq!(
        store.get(&key).await.unwrap().unwrap().expose_secret(),
        "uuid-1"
    );
}

async fn undecryptable_key(result: Result<Option<SecretString>, StoreError>) -> String {
    match result {
        Err(StoreError::Undecryptable { key }) => key,
        other => panic!(
            "expected Undecryptable, got {:?}",
            other.map(|v| v.is_some())
        ),
    }
}

#[tokio::test]
async fn tampered_and_moved_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.db");
    let store = TokenStore::open_sqlite(&path, cipher(1)).unwrap();
    let victim = TokenKey::page_token(&page("1"));
    let attacker = TokenKey::page_token(&page("2"));
    store
        .store(&victim, &secret("victim-token"), TokenKind::Token)
        .await
        .unwrap();
    store
        .store(&attacker, &secret("attacker-token"), TokenKind::Token)
        .await
        .unwrap();

    let raw = rusqlite::Connection::open(&path).unwrap();
    // Copy the attacker's sealed value onto the victim's row.
    raw.execute(
        "UPDATE tokens SET value = (SELECT value FROM tokens WHERE key = ?1) WHERE key = ?2",
        [attacker.as_str(), victim.as_str()],
    )
    .unwrap();
    assert_eq!(
        undecryptable_key(store.get(&victim).await).await,
        victim.as_str()
    );

    // Flip one character of the attacker's own ciphertext.
    let sealed: String = raw
        .query_row(
            "SELECT value FROM tokens WHERE key = ?1",
            [attacker.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    let mut bytes = sealed.into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    raw.execute(
        "UPDATE tokens SET value = ?1 WHERE key = ?2",
        [
            String::from_utf8(bytes).unwrap().as_str(),
            attacker.as_str(),
        ],
    )
    .unwrap();
    assert_eq!(
        undecryptable_key(store.get(&attacker).await).await,
        attacker.as_str()
    );
}

#[tokio::test]
async fn the_database_file_never_holds_a_token_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.db");
    let store = TokenStore::open_sqlite(&path, cipher(1)).unwrap();
    let token = "EAAB-PLAINTEXT-CANARY-0123456789";
    for i in 0..50 {
        let key = TokenKey::page_token(&page(&i.to_string()));
        store
            .store(&key, &secret(token), TokenKind::Token)
            .await
            .unwrap();
    }
    drop(store);
    for name in ["tokens.db", "tokens.db-wal", "tokens.db-shm"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(name)) {
            let haystack = String::from_utf8_lossy(&bytes);
            assert!(
                !haystack.contains(token),
                "{name} holds the token in plaintext"
            );
            assert!(
                !haystack.contains("PLAINTEXT-CANARY"),
                "{name} holds part of the token"
            );
        }
    }
}
