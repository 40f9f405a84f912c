//! The tree the bot reads, as objects (`STORAGE_URL`): `file://<dir>` or
//! `s3://<bucket>/<prefix>` on any S3-compatible service. Used by the PostgreSQL backend, which
//! publishes each conversation from the database and writes each page's metadata here.
//!
//! Keys are the files' paths below the prefix (`facebook/<page_id>/page_metadata.json`,
//! `facebook/<page_id>/conversations/<sender_id>.json`) and contents are the files' bytes, so
//! a bot reading files switches by changing its reader only. A put is atomic: a reader sees
//! the old object or the new one.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value;

use super::StoreError;
use super::conversations::PageMetadata;
use super::local::files::metadata;
use crate::domain::{PageId, SenderId};

/// Where the objects go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// A local folder: the same files the embedded backend writes.
    File(PathBuf),
    /// A bucket; credentials, endpoint and region from the standard `AWS_*` variables.
    S3 { bucket: String, prefix: String },
}

impl StorageUrl {
    /// `file:///abs/dir` or `s3://bucket[/prefix]`.
    pub fn parse(value: &str) -> Result<StorageUrl, String> {
        if let Some(dir) = value.strip_prefix("file://") {
            if dir.is_empty() {
                return Err("a file:// URL names a folder, e.g. file:///srv/salesbot".into());
            }
            return Ok(StorageUrl::File(PathBuf::from(dir)));
        }
        if let Some(rest) = value.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !valid {
                return Err(format!("`{bucket}` is not an S3 bucket name"));
            }
            return Ok(StorageUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        Err("must be file://<folder> or s3://<bucket>/<prefix>".into())
    }
}

/// The standard `AWS_*` settings, read with the rest of the configuration (so a test or the
/// demo can set them without touching the process environment). What is unset here comes
/// from the environment as the AWS SDKs read it (session tokens, IAM roles of a container).
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// `AWS_ENDPOINT_URL`: an S3-compatible service other than AWS.
    pub endpoint: Option<String>,
    /// `AWS_REGION`.
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<secrecy::SecretString>,
    /// `AWS_ALLOW_HTTP=true`: plain http to the endpoint (a service on the same host).
    pub allow_http: bool,
}

#[derive(Clone)]
pub struct ObjectTree {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl std::fmt::Debug for ObjectTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectTree({}, {:?})", self.store, self.prefix)
    }
}

impl ObjectTree {
    pub fn open(url: &StorageUrl, s3: &S3Settings) -> Result<ObjectTree, StoreError> {
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match url {
            StorageUrl::File(dir) => {
                std::fs::create_dir_all(dir).map_err(StoreError::io("create folder", dir))?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(objects)?
                    .with_automatic_cleanup(true);
                (Arc::new(local), String::new())
            }
            StorageUrl::S3 { bucket, prefix } => {
                use secrecy::ExposeSecret;
                let mut builder =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(id) = &s3.access_key_id {
                    builder = builder.with_access_key_id(id);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret.expose_secret());
                }
                if s3.allow_http {
                    builder = builder.with_allow_http(true);
                }
                (Arc::new(builder.build().map_err(objects)?), prefix.clone())
            }
        };
        Ok(ObjectTree { store, prefix })
    }

    /// `facebook/<page_id>/conversations/<sender_id>.json`.
    pub fn conversation_key(page: &str, customer: &str) -> String {
        format!("facebook/{page}/conversations/{customer}.json")
    }

    /// `facebook/<page_id>/page_metadata.json`.
    pub fn metadata_key(page: &PageId) -> String {
        format!("facebook/{page}/page_metadata.json")
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.store
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .map_err(objects)?;
        Ok(())
    }

    /// The object's bytes, `None` when there is none.
    /// Deletes one object; one that is not there is fine.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(objects(err)),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.store.get(&self.path(key)).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(objects)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(objects(err)),
        }
    }

    /// A conversation's bytes, as [`Self::get`].
    pub async fn conversation(
        &self,
        page: &PageId,
        customer: &SenderId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&Self::conversation_key(page.as_str(), customer.as_str()))
            .await
    }

    /// Deletes every object below `prefix` (a folder, whole segments); how many there were.
    async fn delete_below(&self, prefix: &str) -> Result<usize, StoreError> {
        use futures_util::TryStreamExt;
        let found: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.path(prefix)))
            .try_collect()
            .await
            .map_err(objects)?;
        for object in &found {
            match self.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(objects(err)),
            }
        }
        Ok(found.len())
    }

    fn path(&self, key: &str) -> Path {
        match self.prefix.as_str() {
            "" => Path::from(key),
            prefix => Path::from(format!("{prefix}/{key}")),
        }
    }
}

#[async_trait::async_trait]
impl PageMetadata for ObjectTree {
    async fn write(&self, page: &PageId, page_fields: &Value) -> Result<(), StoreError> {
        let document = metadata::document(page_fields);
        self.put(&Self::metadata_key(page), metadata::bytes(&document))
            .await
    }

    async fn erase_page(&self, page: &PageId) -> Result<(), StoreError> {
        self.delete_below(&format!("facebook/{page}")).await?;
        Ok(())
    }

    async fn erase_customer(
        &self,
        page: &PageId,
        customer: &SenderId,
    ) -> Result<usize, StoreError> {
        self.delete(&Self::conversation_key(page.as_str(), customer.as_str()))
            .await?;
        self.delete_below(&format!("facebook/{page}/attachments/{customer}"))
            .await
    }

    async fn read(&self, page: &PageId) -> Result<Option<Value>, StoreError> {
        let bytes = self.get(&Self::metadata_key(page)).await?;
        Ok(bytes.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }
}

#[async_trait::async_trait]
impl crate::store::attachments::AttachmentFiles for ObjectTree {
    /// `facebook/<page_id>/attachments/<sender_id>/<name>`, as the files would be.
    async fn put(
        &self,
        page: &PageId,
        customer: &SenderId,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        ObjectTree::put(self, &attachment_key(page, customer, name), bytes).await
    }

    async fn delete(
        &self,
        page: &PageId,
        customer: &SenderId,
        name: &str,
    ) -> Result<(), StoreError> {
        ObjectTree::delete(self, &attachment_key(page, customer, name)).await
    }
}

fn attachment_key(page: &PageId, customer: &SenderId, name: &str) -> String {
    format!("facebook/{page}/attachments/{customer}/{name}")
}

/// An object store that fails is out of reach for now, as a database would be: retried later.
fn objects(err: object_store::Error) -> StoreError {
    StoreError::Unavailable(Box::new(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_parse_or_say_why() {
        assert_eq!(
            StorageUrl::parse("file:///srv/bot"),
            Ok(StorageUrl::File("/srv/bot".into()))
        );
        assert_eq!(
            StorageUrl::parse("s3://my-bucket/shop/data/"),
            Ok(StorageUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "shop/data".into()
            })
        );
        assert_eq!(
            StorageUrl::parse("s3://my-bucket"),
            Ok(StorageUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            })
        );
        for bad in [
            "file://",
            "s3://",
            "s3://Bad_Bucket/x",
            "http://x",
            "/srv/bot",
        ] {
            assert!(StorageUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_folder_tree_holds_the_files_paths_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let tree =
            ObjectTree::open(&StorageUrl::File(dir.path().into()), &S3Settings::default()).unwrap();
        let key = ObjectTree::conversation_key("101", "7001");
        assert_eq!(tree.get(&key).await.unwrap(), None);
        tree.put(&key, b"[\n{}\n]\n".to_vec()).await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("facebook/101/conversations/7001.json")).unwrap(),
            b"[\n{}\n]\n"
        );
        let page = PageId::parse("101").unwrap();
        tree.write(
            &page,
            &serde_json::json!({"id": "101", "access_token": "EAA"}),
        )
        .await
        .unwrap();
        let written =
            std::fs::read_to_string(dir.path().join("facebook/101/page_metadata.json")).unwrap();
        assert!(
            written.contains("\"101\"") && !written.contains("EAA"),
            "{written}"
        );
    }
}
