//! Records the git commit for `/v1/version`: `PENNYWORTH_GIT_SHA` if set, else
//! `git rev-parse HEAD`, else `unknown`.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PENNYWORTH_GIT_SHA");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let sha = std::env::var("PENNYWORTH_GIT_SHA")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=PENNYWORTH_GIT_SHA={sha}");
}
