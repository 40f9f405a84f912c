//! `salesbot demo`, in-process: the story runs to the end and the files it lists are real.

use salesbot::demo::{self, DemoOptions};

use crate::helpers::free_port;
use serde_json::Value;

#[tokio::test]
async fn the_story_runs_and_every_listed_file_parses() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("demo-data");
    let options = DemoOptions {
        port: free_port(),
        data_dir: data_dir.clone(),
        once: true,
    };
    let summary = demo::run(options.clone())
        .await
        .expect("the demo story completes");

    assert_eq!(summary.user_uuid.len(), 36);
    assert_eq!(summary.pages, ["100000000000101", "100000000000202"]);
    assert_eq!(
        summary.backfilled, 11,
        "8 messages of a new customer and 3 late replies"
    );
    assert!(summary.files.len() >= 8, "{:?}", summary.files);
    for file in &summary.files {
        let value: Value = serde_json::from_slice(&std::fs::read(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            !value.to_string().contains("EAA-demo-page-token"),
            "{} holds a token",
            file.display()
        );
    }
    let renamed: Value = serde_json::from_slice(
        &std::fs::read(data_dir.join("facebook/100000000000101/page_metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(renamed["data"][0]["name"], "Demo Page – Summer Sale");
    let written: Vec<Value> = serde_json::from_slice(
        &std::fs::read(data_dir.join("facebook/100000000000101/conversations/7000000000009.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        written.len(),
        2,
        "the customer's message and the page's reply, once each"
    );
    // What the story says it stored adds up to what the files hold: the self-test polls of
    // step 2, the two webhook events, the nightly poll's backfill.
    let in_files: usize = summary
        .files
        .iter()
        .filter(|f| f.parent().unwrap().ends_with("conversations"))
        .map(|f| {
            serde_json::from_slice::<Vec<Value>>(&std::fs::read(f).unwrap())
                .unwrap()
                .len()
        })
        .sum();
    assert!(summary.fetched_at_connect > 0);
    assert_eq!(
        summary.fetched_at_connect + 2 + summary.backfilled,
        in_files,
        "{summary:?}"
    );

    // A second run starts afresh in its own folder.
    let again = demo::run(DemoOptions {
        port: free_port(),
        ..options
    })
    .await
    .expect("second run");
    assert_eq!(again.files.len(), summary.files.len());
}

#[tokio::test]
async fn a_folder_the_demo_did_not_make_is_never_wiped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let options = DemoOptions {
        port: free_port(),
        data_dir: dir.path().to_path_buf(),
        once: true,
    };
    let err = demo::run(options).await.unwrap_err().to_string();
    assert!(err.contains("was not made by the demo"), "{err}");
    assert!(dir.path().join("precious.txt").exists());
}
