//! The README runs as written: every command of the `sh` blocks of its quick start and CLI
//! sections runs, in order, in one shell against a started `serve`, with only the
//! placeholders filled in (`pw-...`: the admin key; `<id>`: a key id; the address). A command
//! that cannot run here must be listed in [`NOT_RUN`] with the reason; a listed command that
//! is no longer in the README fails the test, so neither list drifts.

use super::serve::{BIN, Serve, Stderr, http};
use std::path::Path;
use std::process::Command;

/// The README sections whose commands run.
const SECTIONS: &[&str] = &[
    "## Quick start",
    "## Managing keys and users from the command line",
];

/// Commands shown but not run here, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo run -- serve",
        "the test starts the same binary with `serve` on a free port",
    ),
    ("scripts/test", "it runs this test"),
    ("cargo build", "cargo built the binary this test runs"),
    (
        "echo \"$PASSWORD\" | pennyworth login --username carol --client-id <app client id> --region eu-west-1",
        "needs a Cognito user pool (tests/cli.rs logs in against moto)",
    ),
];

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md")
}

/// The fenced blocks with info string `lang` inside the [`SECTIONS`] (subsections included).
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_section = false;
    let mut block: Option<(String, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some((info, mut body)) = block.take() {
            if trimmed.starts_with("```") {
                if in_section && info == lang {
                    out.push(body);
                }
            } else {
                body.push_str(line.strip_prefix("  ").unwrap_or(line));
                body.push('\n');
                block = Some((info, body));
            }
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            block = Some((info.trim().to_string(), String::new()));
        } else if line.starts_with("## ") {
            in_section = SECTIONS.contains(&line.trim_end());
        }
    }
    out
}

/// Shell commands of a block: continuation lines joined, blank lines dropped.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        if !current.trim().is_empty() {
            out.push(current.trim().to_string());
        }
        current.clear();
    }
    out
}

/// A command without its trailing comment (`  # ...`).
fn without_comment(cmd: &str) -> &str {
    cmd.split("  #").next().unwrap_or(cmd).trim()
}

#[test]
fn readme_sections_have_the_commands_the_test_expects() {
    let text = readme();
    let all: Vec<String> = blocks(&text, "sh")
        .iter()
        .flat_map(|b| commands(b))
        .collect();
    assert!(all.len() >= 15, "too few commands found: {all:#?}");
    for (cmd, why) in NOT_RUN {
        assert!(
            all.iter().any(|c| without_comment(c) == *cmd),
            "`{cmd}` is listed as not run ({why}) but is not in the README any more: {all:#?}"
        );
    }
}

/// The Python interpreter with `openai` (as in tests/openai_sdk.rs), if any.
fn python() -> Option<String> {
    let candidate = std::env::var("PENNYWORTH_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let ok = Command::new(&candidate)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(candidate)
    } else {
        assert!(
            std::env::var("PENNYWORTH_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "PENNYWORTH_REQUIRE_PYTHON=1 but `{candidate}` cannot import openai"
        );
        None
    }
}

#[test]
fn readme_commands_run_as_printed() {
    let text = readme();
    let data = tempfile::tempdir().expect("data");
    let home = tempfile::tempdir().expect("home");
    let server = Serve::start(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        data.path(),
        &[("PENNYWORTH_LOG", "warn")],
        Stderr::Keep,
    );
    let key = server
        .key
        .clone()
        .expect("first start prints the admin key");
    let url = format!("http://{}", server.addr);

    // Keys for the `<id>` placeholders, one per occurrence.
    let auth = format!("Bearer {key}");
    let mut ids = Vec::new();
    for n in 0..text.matches("<id>").count() {
        let (status, body) = http(
            &server.addr,
            "POST",
            "/v1/keys",
            &[("authorization", &auth)],
            Some(&format!(r#"{{"name":"readme-{n}"}}"#)),
        );
        assert_eq!(status, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        ids.push(v["id"].as_str().expect("id").to_string());
    }

    let fill = |cmd: &str, ids: &mut std::vec::IntoIter<String>| {
        let mut out = cmd
            .replace("pw-...", &key)
            .replace("http://127.0.0.1:8080", &url);
        while out.contains("<id>") {
            let id = ids.next().expect("an id per placeholder");
            out = out.replacen("<id>", &id, 1);
        }
        out
    };
    let mut ids = ids.into_iter();
    let mut script = String::from("set -e -o pipefail\n");
    let mut run = Vec::new();
    for cmd in blocks(&text, "sh").iter().flat_map(|b| commands(b)) {
        if NOT_RUN.iter().any(|(c, _)| without_comment(&cmd) == *c) {
            continue;
        }
        let filled = fill(&cmd, &mut ids);
        let n = run.len();
        // A marker before each command's output, so a failure names its command.
        script.push_str(&format!("echo '>>> {n}'\n{filled}\necho\n"));
        run.push(cmd);
    }
    assert!(run.len() >= 12, "too few commands ran: {run:#?}");

    let bin_dir = Path::new(BIN).parent().expect("binary directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(home.path())
        .env("PATH", path)
        .env("HOME", home.path())
        .env("PENNYWORTH_API_URL", &url)
        .env_remove("PENNYWORTH_API_KEY")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout
        .rsplit(">>> ")
        .next()
        .and_then(|s| s.lines().next())
        .and_then(|n| n.trim().parse::<usize>().ok())
        .and_then(|n| run.get(n));
    assert!(
        out.status.success(),
        "README command failed: {last:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // Every command ran and none answered an API error.
    for (n, cmd) in run.iter().enumerate() {
        let section = stdout
            .split(&format!(">>> {n}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("`{cmd}` did not run:\n{stdout}"));
        let section = section.split(">>> ").next().unwrap_or_default();
        assert!(
            !section.contains("\"error\""),
            "`{cmd}` answered an error:\n{section}"
        );
    }
    for expected in ["hello gateway", "data: [DONE]", "carol@example.com"] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }

    // The Python example, where an interpreter with `openai` exists.
    if let Some(python) = python() {
        let code = blocks(&text, "python").join("\n");
        assert!(code.contains("from openai import OpenAI"), "{code}");
        let code = code
            .replace("pw-...", &key)
            .replace("http://127.0.0.1:8080", &url);
        let out = Command::new(python)
            .args(["-c", &code])
            .output()
            .expect("run python");
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{printed}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            printed.contains("'echo'") && printed.contains("stream this"),
            "{printed}"
        );
    }
}

#[test]
fn every_doc_is_linked_from_the_readme_and_the_index() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = readme();
    let index = std::fs::read_to_string(root.join("doc/README.md")).expect("doc/README.md");
    assert!(
        text.contains("(doc/README.md)"),
        "README links doc/README.md"
    );
    for entry in std::fs::read_dir(root.join("doc")).expect("doc/") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        if !name.ends_with(".md") || name == "README.md" {
            continue;
        }
        assert!(
            text.contains(&format!("(doc/{name})")),
            "README does not link doc/{name}"
        );
        assert!(
            index.contains(&format!("({name})")),
            "doc/README.md does not link {name}"
        );
    }
}
