//! Nothing blocking runs on the async worker threads (issue 16, item 10): password hashing and
//! SQLite writes of the embedded store run on the blocking pool, so health checks answer while
//! they run. On a single-threaded runtime any blocking call on the worker would hold every
//! other request for its whole duration.

mod common;

use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "current_thread")]
async fn health_answers_while_passwords_are_hashed() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let engine = std::sync::Arc::new(engine);
    let admin = dir.key("admin").to_string();
    let hashing = {
        let engine = engine.clone();
        tokio::spawn(async move {
            for _ in 0..4 {
                let (status, body) = common::call(
                    &engine,
                    "POST",
                    "/v1/admin/users/user/password",
                    &admin,
                    json!({"password": "Correct-horse-1!"}),
                )
                .await;
                assert_eq!(status, 200, "{body}");
            }
        })
    };
    let mut worst = Duration::ZERO;
    let mut samples = 0;
    while !hashing.is_finished() {
        let started = Instant::now();
        let (status, _) = common::call(&engine, "GET", "/v1/health", "", Value::Null).await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(5)).await;
        worst = worst.max(started.elapsed());
        samples += 1;
    }
    hashing.await.expect("hashing task");
    assert!(
        samples > 3,
        "only {samples} health checks ran during hashing"
    );
    assert!(
        worst < Duration::from_millis(100),
        "a health check took {worst:?}"
    );
}
