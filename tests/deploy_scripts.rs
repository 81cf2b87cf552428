//! The deployment's scripts and workflow, run here as the deploy workflow and an operator run
//! them: the exact `sam deploy` command line (with and without a custom domain), the workflow's
//! triggers, pins and secrets, the smoke test against `pennyworth serve`, and the first admin
//! created with `pennyworth init` in a user pool shaped like the template's (moto).

use serde_norway::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::server::BIN;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join(name)).expect("read");
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `scripts/deploy/sam-deploy --print` with only these variables set.
fn sam_deploy(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(root().join("scripts/deploy/sam-deploy"));
    cmd.arg("--print")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sam-deploy")
}

fn args_of(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "sam-deploy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .expect("utf-8")
        .split_terminator('\0')
        .map(str::to_string)
        .collect()
}

fn expected_line(stack: &str, region: &str, overrides: [&str; 3]) -> Vec<String> {
    let mut v: Vec<String> = [
        "deploy",
        "--stack-name",
        stack,
        "--region",
        region,
        "--resolve-s3",
        "--s3-prefix",
        stack,
        "--capabilities",
        "CAPABILITY_IAM",
        "--no-confirm-changeset",
        "--no-fail-on-empty-changeset",
        "--parameter-overrides",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(overrides.iter().map(|s| s.to_string()));
    v
}

#[test]
fn sam_deploy_without_a_domain_passes_quoted_empty_overrides() {
    // A bare `BaseDomain=` is rejected by SAM CLI (exit 2); leaving it out would keep the
    // previous value, so a removed domain would stay. `.ci/sam-deploy-check` feeds the same
    // lines to SAM CLI's own parser.
    let out = sam_deploy(&[("STACK_NAME", "pennyworth"), ("AWS_REGION", "us-west-2")]);
    assert_eq!(
        args_of(&out),
        expected_line(
            "pennyworth",
            "us-west-2",
            [r#"BaseDomain="""#, r#"HostedZoneId="""#, r#"AlarmEmail="""#]
        )
    );
}

#[test]
fn sam_deploy_with_a_domain_passes_it_and_its_zone() {
    let out = sam_deploy(&[
        ("STACK_NAME", "pw-prod"),
        ("AWS_REGION", "eu-central-1"),
        ("BASE_DOMAIN", "example.com"),
        ("ROUTE53_HOSTED_ZONE_ID", "Z0123456789ABCDEFGHIJ"),
        ("ALARM_EMAIL", "ops@example.com"),
    ]);
    assert_eq!(
        args_of(&out),
        expected_line(
            "pw-prod",
            "eu-central-1",
            [
                r#"BaseDomain="example.com""#,
                r#"HostedZoneId="Z0123456789ABCDEFGHIJ""#,
                r#"AlarmEmail="ops@example.com""#
            ]
        )
    );
}

#[test]
fn sam_deploy_refuses_incomplete_or_unsafe_settings() {
    const STACK: (&str, &str) = ("STACK_NAME", "pennyworth");
    const REGION: (&str, &str) = ("AWS_REGION", "us-west-2");
    const ZONE: (&str, &str) = ("ROUTE53_HOSTED_ZONE_ID", "Z0123456789ABCDEFGHIJ");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[REGION], "STACK_NAME must be set"),
        (&[STACK], "AWS_REGION must be set"),
        (
            &[STACK, ("AWS_REGION", "us west 2")],
            "AWS_REGION must be set",
        ),
        (
            &[STACK, REGION, ("BASE_DOMAIN", "example.com")],
            "ROUTE53_HOSTED_ZONE_ID must be",
        ),
        (&[STACK, REGION, ZONE], "BASE_DOMAIN is not"),
        (
            &[
                STACK,
                REGION,
                ZONE,
                ("BASE_DOMAIN", "example.com HostedZoneId=Z1"),
            ],
            "BASE_DOMAIN must be a domain",
        ),
        (
            &[STACK, REGION, ("ALARM_EMAIL", "a@b.c AlarmEmail=x")],
            "ALARM_EMAIL must be one",
        ),
    ];
    for (env, needle) in cases {
        let out = sam_deploy(env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(needle), "{env:?}: {err}");
        assert!(out.stdout.is_empty(), "{env:?}");
    }
}

/// The workflow's steps, in order.
fn steps(workflow: &Value) -> &Vec<Value> {
    workflow["jobs"]["deploy"]["steps"]
        .as_sequence()
        .expect("steps")
}

#[test]
fn deploy_runs_after_ci_passed_and_never_twice_at_once() {
    let deploy = yaml(".github/workflows/deploy.yml");
    let ci = yaml(".github/workflows/ci.yml");
    let run = &deploy["on"]["workflow_run"];
    assert_eq!(run["workflows"][0].as_str(), ci["name"].as_str());
    assert_eq!(run["types"][0].as_str(), Some("completed"));
    assert_eq!(run["branches"][0].as_str(), Some("main"));
    assert!(deploy["on"]["push"].is_null(), "no deploy on a bare push");
    let condition = deploy["jobs"]["deploy"]["if"].as_str().expect("if");
    for part in [
        "github.event.workflow_run.conclusion == 'success'",
        "github.event.workflow_run.event == 'push'",
        "github.event.workflow_run.head_repository.full_name == github.repository",
    ] {
        assert!(condition.contains(part), "the job's if misses {part}");
    }
    // The commit CI passed on is the one checked out, built and reported by /v1/version.
    let sha = deploy["jobs"]["deploy"]["env"]["DEPLOY_SHA"]
        .as_str()
        .expect("DEPLOY_SHA");
    assert!(sha.contains("github.event.workflow_run.head_sha"), "{sha}");
    let checkout = steps(&deploy)
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/checkout@"))
        })
        .expect("checkout");
    assert_eq!(
        checkout["with"]["ref"].as_str(),
        Some("${{ env.DEPLOY_SHA }}")
    );
    assert_eq!(
        deploy["concurrency"]["cancel-in-progress"].as_bool(),
        Some(false)
    );
    let group = deploy["concurrency"]["group"].as_str().expect("group");
    assert!(!group.contains("${{"), "one group for every run: {group}");
}

#[test]
fn workflows_pin_actions_by_commit_and_tools_by_version() {
    for name in ["ci.yml", "deploy.yml"] {
        let text =
            std::fs::read_to_string(root().join(".github/workflows").join(name)).expect("workflow");
        let mut uses = 0;
        for line in text.lines() {
            let Some(rest) = line.trim().trim_start_matches("- ").strip_prefix("uses: ") else {
                continue;
            };
            uses += 1;
            let (action, pin) = rest.split_once('@').expect("action@ref");
            let (sha, comment) = pin.split_once(" # ").unwrap_or((pin, ""));
            assert!(
                sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                "{name}: {action} is not pinned to a commit: {pin}"
            );
            assert!(
                comment.starts_with('v'),
                "{name}: {action} has no version comment"
            );
        }
        assert!(uses > 0, "{name} uses no actions?");
        assert!(!text.contains("toolchain install stable"), "{name}");
    }
    let deploy = yaml(".github/workflows/deploy.yml");
    let env = &deploy["env"];
    assert_eq!(env["RUST_TOOLCHAIN"].as_str(), Some("1.95.0"));
    for k in ["CARGO_LAMBDA_VERSION", "SAM_CLI_VERSION"] {
        let v = env[k].as_str().expect(k);
        assert!(
            v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{k}: {v}"
        );
    }
    let install = steps(&deploy)
        .iter()
        .filter_map(|s| s["run"].as_str())
        .find(|r| r.contains("pip install"))
        .expect("tool install");
    assert!(install.contains("cargo-lambda==${CARGO_LAMBDA_VERSION}"));
    assert!(install.contains("aws-sam-cli==${SAM_CLI_VERSION}"));
}

#[test]
fn deploy_step_passes_the_documented_secrets_to_the_script() {
    let deploy = yaml(".github/workflows/deploy.yml");
    let step = steps(&deploy)
        .iter()
        .find(|s| s["name"].as_str() == Some("sam deploy"))
        .expect("sam deploy step");
    assert!(
        step["run"]
            .as_str()
            .expect("run")
            .contains("scripts/deploy/sam-deploy"),
        "the workflow runs the script the tests check"
    );
    for var in [
        "STACK_NAME",
        "AWS_REGION",
        "BASE_DOMAIN",
        "ROUTE53_HOSTED_ZONE_ID",
        "ALARM_EMAIL",
    ] {
        assert_eq!(
            step["env"][var].as_str(),
            Some(format!("${{{{ secrets.{var} }}}}").as_str()),
            "{var}"
        );
    }
    // Every secret the workflow reads is in the deployment guide's table.
    let text = std::fs::read_to_string(root().join(".github/workflows/deploy.yml")).expect("read");
    let guide = std::fs::read_to_string(root().join("doc/deployment.md")).expect("guide");
    let used: BTreeSet<&str> = text
        .match_indices("secrets.")
        .map(|(i, _)| {
            let rest = &text[i + "secrets.".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    assert!(used.contains("AWS_DEPLOY_ROLE_ARN") && used.contains("SMOKE_TEST_API_KEY"));
    for s in &used {
        assert!(
            guide.contains(&format!("| `{s}` |")),
            "secret {s} is not in doc/deployment.md's table"
        );
    }
    assert!(
        !text.contains("secrets.HOSTED_ZONE_ID"),
        "renamed ROUTE53_HOSTED_ZONE_ID"
    );
}

/// Runs the smoke test against `url` with these variables.
fn smoke(url: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(root().join("scripts/deploy/smoke-test"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PENNYWORTH_API_URL", url);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run smoke-test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The `pennyworth` CLI against a gateway.
fn cli(url: &str, key: &str, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("PENNYWORTH_API_URL", url)
        .env("PENNYWORTH_API_KEY", key)
        .env("PENNYWORTH_CONFIG_HOME", home);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run cli")
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "CLI failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The smoke-test user of the guide (group `users`) and its key, made with the admin's key.
fn smoke_user(url: &str, admin: &str, home: &Path, env: &[(&str, &str)]) -> String {
    json_of(&cli(
        url,
        admin,
        home,
        &[
            "users",
            "create",
            "deploy-smoke",
            "--group",
            "users",
            "--json",
        ],
        env,
    ));
    json_of(&cli(
        url,
        admin,
        home,
        &[
            "keys",
            "create",
            "--name",
            "smoke-test",
            "--user",
            "deploy-smoke",
            "--json",
        ],
        env,
    ))["key"]
        .as_str()
        .expect("key")
        .to_string()
}

/// The smoke-test user's keys (ids).
fn smoke_keys(url: &str, admin: &str, home: &Path, env: &[(&str, &str)]) -> Vec<String> {
    json_of(&cli(
        url,
        admin,
        home,
        &["keys", "list", "--user", "deploy-smoke", "--json"],
        env,
    ))["data"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn smoke_test_creates_uses_and_revokes_a_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_server, addr, printed) = common::server::start(&tmp.path().join("data"), &[]);
    let admin = printed
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("pw-"))
        .expect("admin key printed")
        .to_string();
    let url = format!("http://{addr}");
    let home = tmp.path().join("home");
    let key = smoke_user(&url, &admin, &home, &[]);
    let before = smoke_keys(&url, &admin, &home, &[]);
    assert_eq!(before.len(), 1);

    // Health only, with a warning, when no key is configured.
    let (ok, text) = smoke(&format!("{url}/v1"), &[]);
    assert!(ok, "{text}");
    assert!(text.contains("SMOKE_TEST_API_KEY is not set"), "{text}");

    // The whole run with a model the user may use (the built-in echo model: no AWS).
    let (ok, text) = smoke(
        &url,
        &[("SMOKE_TEST_API_KEY", &key), ("SMOKE_TEST_MODEL", "echo")],
    );
    assert!(ok, "{text}");
    for line in [
        "ok: GET /v1/health 200",
        "ok: created key",
        "ok: GET /v1/models lists",
        "ok: POST /v1/chat/completions with echo",
        "ok: revoked key",
    ] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }
    assert_eq!(
        smoke_keys(&url, &admin, &home, &[]),
        before,
        "revoked again"
    );

    // A model the user may not use: reported with what to do, and the key still revoked.
    let (ok, text) = smoke(
        &url,
        &[
            ("SMOKE_TEST_API_KEY", &key),
            ("SMOKE_TEST_MODEL", "claude-opus-4.1"),
        ],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("may not use `claude-opus-4.1`"), "{text}");
    assert!(text.contains("ok: revoked key"), "{text}");
    assert_eq!(smoke_keys(&url, &admin, &home, &[]), before);

    // Another commit than the one expected fails the run.
    let (ok, text) = smoke(
        &url,
        &[(
            "EXPECTED_COMMIT",
            "0000000000000000000000000000000000000000",
        )],
    );
    assert!(!ok && text.contains("expected 0000000"), "{text}");

    // A key that is not valid: one clear error, nothing created.
    let (ok, text) = smoke(&url, &[("SMOKE_TEST_API_KEY", "pw-not-a-key")]);
    assert!(!ok && text.contains("POST /v1/keys answered 401"), "{text}");
}

#[test]
fn first_admin_with_init_in_a_pool_shaped_like_the_template() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Some(endpoint) = common::moto::endpoint() else {
        return;
    };
    let template = yaml("template.yaml");
    let pool_id = rt.block_on(template_pool(&endpoint, &template));
    let env: Vec<(&str, &str)> = vec![
        // What the guide exports, plus moto's endpoint and dummy credentials.
        ("PENNYWORTH_USER_POOL_ID", &pool_id),
        ("AWS_REGION", common::moto::REGION),
        ("PENNYWORTH_COGNITO_ENDPOINT", &endpoint),
        ("AWS_ACCESS_KEY_ID", common::moto::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", common::moto::SECRET_KEY),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("PENNYWORTH_IDENTITY_CACHE_TTL", "0"),
    ];
    let tmp = tempfile::tempdir().expect("tmp");
    let init = || {
        let mut cmd = Command::new(BIN);
        cmd.args(["init", "--json", "--admin", "alice", "--data-dir"])
            .arg(tmp.path().join("unused"));
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.output().expect("init")
    };
    let first = json_of(&init());
    assert_eq!(first["user"], "alice");
    let admin = first["key"].as_str().expect("key").to_string();
    let client = common::moto::client(&endpoint);
    let groups = rt
        .block_on(
            client
                .admin_list_groups_for_user()
                .user_pool_id(&pool_id)
                .username("alice")
                .send(),
        )
        .expect("groups");
    let names: Vec<_> = groups
        .groups()
        .iter()
        .filter_map(|g| g.group_name())
        .collect();
    assert_eq!(names, ["admins"]);
    // A pool with users is never initialized again.
    let again = init();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to initialize"));

    // The gateway on that pool: the smoke-test user and a full smoke run, then the guide's key
    // rotation and revocation.
    let (_server, addr, _) = common::server::start(&tmp.path().join("unused"), &env);
    let url = format!("http://{addr}");
    let home = tmp.path().join("home");
    let key = smoke_user(&url, &admin, &home, &env);
    let (ok, text) = smoke(
        &url,
        &[("SMOKE_TEST_API_KEY", &key), ("SMOKE_TEST_MODEL", "echo")],
    );
    assert!(ok, "{text}");
    let ids = smoke_keys(&url, &admin, &home, &env);
    assert_eq!(ids.len(), 1, "the run's key is revoked: {ids:?}");

    let rotated = json_of(&cli(
        &url,
        &admin,
        &home,
        &["keys", "rotate", &ids[0], "--json"],
        &env,
    ));
    let new_key = rotated["key"].as_str().expect("new key");
    let whoami = |k: &str| cli(&url, k, &home, &["whoami", "--json"], &env);
    assert!(!whoami(&key).status.success(), "the old key stops working");
    assert_eq!(json_of(&whoami(new_key))["user"], "deploy-smoke");
    let new_id = rotated["id"].as_str().expect("id");
    json_of(&cli(
        &url,
        &admin,
        &home,
        &["keys", "revoke", new_id, "--json"],
        &env,
    ));
    assert!(!whoami(new_key).status.success(), "revoked");
}

/// A user pool with the template's custom attribute and groups.
async fn template_pool(endpoint: &str, template: &Value) -> String {
    use aws_sdk_cognitoidentityprovider::types::{
        AttributeDataType, SchemaAttributeType, StringAttributeConstraintsType,
    };
    let client = common::moto::client(endpoint);
    let props = &template["Resources"]["UserPool"]["Properties"];
    let mut create = client
        .create_user_pool()
        .pool_name(format!("deploy-guide-{}", std::process::id()));
    for attr in props["Schema"].as_sequence().expect("schema") {
        let c = &attr["StringAttributeConstraints"];
        create = create.schema(
            SchemaAttributeType::builder()
                .name(attr["Name"].as_str().expect("name"))
                .attribute_data_type(AttributeDataType::String)
                .mutable(attr["Mutable"].as_bool().unwrap_or(false))
                .string_attribute_constraints(
                    StringAttributeConstraintsType::builder()
                        .min_length(c["MinLength"].as_str().expect("min"))
                        .max_length(c["MaxLength"].as_str().expect("max"))
                        .build(),
                )
                .build(),
        );
    }
    let pool = create.send().await.expect("create pool");
    let pool_id = pool
        .user_pool()
        .and_then(|p| p.id())
        .expect("pool id")
        .to_string();
    let resources = template["Resources"].as_mapping().expect("resources");
    let mut groups = 0;
    for (_, r) in resources {
        if r["Type"].as_str() == Some("AWS::Cognito::UserPoolGroup") {
            let p = &r["Properties"];
            client
                .create_group()
                .user_pool_id(&pool_id)
                .group_name(p["GroupName"].as_str().expect("group"))
                .precedence(p["Precedence"].as_i64().expect("precedence") as i32)
                .send()
                .await
                .expect("create group");
            groups += 1;
        }
    }
    assert_eq!(groups, 3, "admins, developers, users");
    pool_id
}
