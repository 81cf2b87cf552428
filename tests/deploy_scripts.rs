//! The deploy workflow and its command line: the exact `sam deploy` arguments of
//! `scripts/deploy/sam-deploy` (with and without a custom domain), and the workflow's trigger,
//! pins and secrets. (`.ci/sam-deploy-check` feeds the same lines to SAM CLI's own parser; the
//! smoke test and the first admin are in `tests/deploy_smoke.rs`.)

use serde_norway::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

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

/// SAM's cargo-lambda build uses the release profile; the workflow's `CARGO_PROFILE_RELEASE_*`
/// variables make it the `[profile.lambda]` of Cargo.toml, and must say what that profile says.
#[test]
fn sam_build_uses_the_lambda_profile_settings() {
    let deploy = yaml(".github/workflows/deploy.yml");
    let build = steps(&deploy)
        .iter()
        .find(|s| s["name"].as_str() == Some("sam build"))
        .expect("a `sam build` step");
    let env = &build["env"];
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let lambda = cargo
        .split("[profile.lambda]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [profile.lambda] section");
    let value = |key: &str| {
        lambda
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("[profile.lambda] sets no `{key}`"))
    };
    for (var, key) in [
        ("CARGO_PROFILE_RELEASE_LTO", "lto"),
        ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "codegen-units"),
        ("CARGO_PROFILE_RELEASE_STRIP", "strip"),
    ] {
        assert_eq!(env[var].as_str(), Some(value(key).as_str()), "{var}");
    }
}
