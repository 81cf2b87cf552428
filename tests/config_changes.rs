//! Behaviour follows config: adding an alias to models.yaml and editing a policy change what
//! callers may do after a reload (a restart), with no code change.

mod common;

use pennyworth::{CompiledConfig, Engine};
use std::path::Path;

async fn chat_status(engine: &Engine, key: &str, model: &str) -> u16 {
    let req = common::request(
        "POST",
        "/v1/chat/completions",
        Some(key),
        common::chat_body(model, "hi"),
    );
    common::send(engine, req).await.0.as_u16()
}

fn restart(dir: &Path, directory: &common::TestDirectory) -> Engine {
    let config = CompiledConfig::load(dir).unwrap_or_else(|e| panic!("{e}"));
    Engine::new(config, directory.directory.clone())
}

#[tokio::test]
async fn models_and_policies_drive_behaviour() {
    let tmp = common::copy_default_config();
    let dir = common::TestDirectory::new().await;
    let (admin, user) = (dir.key("admin").to_string(), dir.key("user").to_string());

    // 1. The alias does not exist yet.
    let engine = restart(tmp.path(), &dir);
    assert_eq!(chat_status(&engine, &admin, "echo-premium").await, 404);

    // 2. Add it to models.yaml in the premium group: admins may use it, users may not.
    let models = tmp.path().join("models.yaml");
    let mut text = std::fs::read_to_string(&models).expect("read");
    text.push_str("\n  echo-premium:\n    provider: echo\n    groups: [premium]\n");
    std::fs::write(&models, text).expect("write");
    let engine = restart(tmp.path(), &dir);
    assert_eq!(chat_status(&engine, &admin, "echo-premium").await, 200);
    // Hidden from users: the same 404 as an alias that does not exist.
    assert_eq!(chat_status(&engine, &user, "echo-premium").await, 404);

    // 3. A new policy file grants users the premium group.
    std::fs::write(
        tmp.path().join("policies/premium.cedar"),
        "permit (principal in Pennyworth::Group::\"users\", action == Pennyworth::Action::\"chat\", resource in Pennyworth::ModelGroup::\"premium\");\n",
    )
    .expect("write");
    let engine = restart(tmp.path(), &dir);
    assert_eq!(chat_status(&engine, &user, "echo-premium").await, 200);

    // 4. A forbid policy wins over every permit, even for admins: no streaming for anyone
    //    on this alias.
    std::fs::write(
        tmp.path().join("policies/no-stream.cedar"),
        "forbid (principal, action == Pennyworth::Action::\"chat\", resource == Pennyworth::Model::\"echo-premium\") when { context.stream };\n",
    )
    .expect("write");
    let engine = restart(tmp.path(), &dir);
    let body = serde_json::json!({"model": "echo-premium", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let req = common::request(
        "POST",
        "/v1/chat/completions",
        Some(&admin),
        body.to_string(),
    );
    assert_eq!(common::send(&engine, req).await.0.as_u16(), 403);
    assert_eq!(chat_status(&engine, &admin, "echo-premium").await, 200);

    // 5. The model list follows the same policies.
    let req = common::request("GET", "/v1/models", Some(&user), "");
    let (_, _, body) = common::send(&engine, req).await;
    let list: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"echo-premium"), "{ids:?}");
    // The grant was by group, so the other premium aliases came with it.
    assert!(ids.contains(&"claude-sonnet-4.5"), "{ids:?}");
    let req = common::request("GET", "/v1/models", Some(dir.key("nogroup")), "");
    let (_, _, body) = common::send(&engine, req).await;
    let list: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(list["data"], serde_json::json!([]));
}

#[tokio::test]
async fn body_limit_is_configurable() {
    let tmp = common::copy_default_config();
    let routes = tmp.path().join("routes.yaml");
    let text = std::fs::read_to_string(&routes).expect("read");
    std::fs::write(
        &routes,
        text.replace("max_body_bytes: 6291456", "max_body_bytes: 100"),
    )
    .expect("write");
    let dir = common::TestDirectory::new().await;
    let engine = restart(tmp.path(), &dir);
    let big = common::chat_body("echo", &"word ".repeat(40));
    let req = common::request("POST", "/v1/chat/completions", Some(dir.key("admin")), big);
    assert_eq!(common::send(&engine, req).await.0.as_u16(), 413);
    let small = common::chat_body("echo", "hi");
    let req = common::request(
        "POST",
        "/v1/chat/completions",
        Some(dir.key("admin")),
        small,
    );
    assert_eq!(common::send(&engine, req).await.0.as_u16(), 200);
}
