//! Records the git commit for `/v1/version`: `PENNYWORTH_GIT_SHA` if set, else
//! `git rev-parse HEAD`, else `unknown`.
use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=PENNYWORTH_GIT_SHA");
    // In a git worktree `.git` is a file: watch the real HEAD and refs, and only paths that
    // exist (a missing path makes cargo rerun this script, and rebuild the crate, every time).
    let git_dir = git(&["rev-parse", "--git-dir"]);
    let common_dir = git(&["rev-parse", "--git-common-dir"]);
    for path in [
        git_dir.as_deref().map(|d| format!("{d}/HEAD")),
        common_dir.as_deref().map(|d| format!("{d}/refs/heads")),
        common_dir.as_deref().map(|d| format!("{d}/packed-refs")),
    ]
    .into_iter()
    .flatten()
    {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let sha = std::env::var("PENNYWORTH_GIT_SHA")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=PENNYWORTH_GIT_SHA={sha}");
}
