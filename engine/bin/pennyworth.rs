//! The `pennyworth` command: run the gateway locally, check a config, initialize a store.

use clap::{Parser, Subcommand};
use pennyworth::CompiledConfig;
use pennyworth::auth;
use pennyworth::auth::jwt::JwtVerifier;
use pennyworth::cli;
use pennyworth::directory::Directory;
use pennyworth::directory::local::LocalDirectory;
use pennyworth::providers::{ProviderSettings, Providers};
use pennyworth::{Engine, server};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// `eprintln!` that drops the line when stderr is closed instead of panicking.
macro_rules! eline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "pennyworth",
    version,
    about = "OpenAI-compatible gateway over AWS Bedrock and other LLMs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway locally on the embedded store.
    Serve {
        /// Config directory (routes.yaml, models.yaml, policies/).
        #[arg(long, env = "PENNYWORTH_CONFIG_DIR", default_value = ".")]
        config: PathBuf,
        /// Data directory of the embedded store.
        #[arg(long, env = "PENNYWORTH_DATA_DIR", default_value = ".pennyworth")]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, env = "PENNYWORTH_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Validate a config directory and print every problem found.
    Check {
        /// Config directory.
        #[arg(long, env = "PENNYWORTH_CONFIG_DIR", default_value = ".")]
        config: PathBuf,
        /// Fail on warnings too (e.g. a model group that no policy names).
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Create the first admin user and API key in an empty store.
    Init {
        /// Data directory of the embedded store.
        #[arg(long, env = "PENNYWORTH_DATA_DIR", default_value = ".pennyworth")]
        data_dir: PathBuf,
        /// Name of the admin user.
        #[arg(long, default_value = "admin")]
        admin: String,
        /// Print `{"user":..,"key":..}` instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Log in to the Cognito user pool (password on stdin); tokens are cached for later commands.
    Login {
        #[command(flatten)]
        args: cli::LoginArgs,
        #[command(flatten)]
        remote: cli::Remote,
    },
    /// Forget the cached login.
    Logout,
    /// Show who the gateway thinks you are.
    Whoami {
        #[command(flatten)]
        remote: cli::Remote,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: cli::KeysCommand,
        #[command(flatten)]
        remote: cli::Remote,
    },
    /// Manage users (admins).
    Users {
        #[command(subcommand)]
        command: cli::UsersCommand,
        #[command(flatten)]
        remote: cli::Remote,
    },
    /// Usage and cost: yours, a user's (--user) or everyone's (--all).
    Usage {
        #[command(flatten)]
        args: cli::usage::UsageArgs,
        #[command(flatten)]
        remote: cli::Remote,
    },
}

fn report_config_errors(dir: &Path, errors: &pennyworth::config::ConfigErrors) {
    eline!(
        "configuration in `{}` has {} problem(s):",
        dir.display(),
        errors.0.len()
    );
    for e in &errors.0 {
        eline!("  {e}");
    }
}

/// File in the data directory that receives the first admin key when no terminal can.
const ADMIN_KEY_FILE: &str = "admin-key";

/// Hands the first admin key to a person, never to stdout (which log collectors keep): to the
/// terminal when stderr is one, else to `<data_dir>/admin-key`, created with mode 0600.
/// Stdout only says where it went.
fn hand_over_key(data_dir: &Path, user: &str, key: &str) -> Result<(), String> {
    use std::io::IsTerminal as _;
    if std::io::stderr().is_terminal() {
        eline!();
        eline!("  Created admin user `{user}` with API key (shown once, store it now):");
        eline!();
        eline!("    {key}");
        eline!();
        say(format!(
            "created admin user `{user}`; its API key was shown on the terminal (stderr)"
        ));
        return Ok(());
    }
    let path = data_dir.join(ADMIN_KEY_FILE);
    write_private(&path, &format!("{key}\n"))
        .map_err(|e| format!("cannot write the admin key to `{}`: {e}", path.display()))?;
    say(format!(
        "created admin user `{user}`; its API key (shown once) is in `{}` (mode 0600): store it, then delete the file",
        path.display()
    ));
    Ok(())
}

/// Writes a new file readable by its owner only; an existing file is an error.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// One line on stdout; a closed stdout drops it instead of panicking.
fn say(text: impl std::fmt::Display) {
    cli::output::line(text);
}

/// The Cognito user pool when `PENNYWORTH_USER_POOL_ID` is set, else the embedded store in
/// `data_dir`.
async fn open_directory(
    data_dir: &Path,
) -> Result<(Arc<dyn Directory>, Option<JwtVerifier>), String> {
    match pennyworth::directory::cognito::from_env().await? {
        Some((d, jwt)) => Ok((Arc::new(d), jwt)),
        None => Ok((
            Arc::new(LocalDirectory::open(data_dir).map_err(|e| e.to_string())?),
            None,
        )),
    }
}

async fn serve(config: PathBuf, data_dir: PathBuf, listen: SocketAddr) -> ExitCode {
    // EMF metric lines on stdout only when asked (PENNYWORTH_METRICS=emf), e.g. under a
    // CloudWatch agent; the default is the plain access and usage log lines.
    match pennyworth::metrics::Emf::from_env(false) {
        Ok(emf) => pennyworth::metrics::install(emf),
        Err(e) => {
            eline!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let compiled = match CompiledConfig::load(&config) {
        Ok(c) => c,
        Err(errors) => {
            report_config_errors(&config, &errors);
            return ExitCode::from(2);
        }
    };
    for w in pennyworth::config::lint::check_dir(&config) {
        tracing::warn!("{w}");
    }
    let (directory, jwt) = match open_directory(&data_dir).await {
        Ok(d) => d,
        Err(e) => {
            eline!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match directory.user_count().await {
        Ok(0) => match auth::initialize(directory.as_ref(), "admin").await {
            Ok((user, _, key)) => {
                if let Err(e) = hand_over_key(&data_dir, &user.username, key.expose()) {
                    eline!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eline!("error: cannot initialize the store: {e}");
                return ExitCode::FAILURE;
            }
        },
        Ok(_) => {}
        Err(e) => {
            eline!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let providers = match Providers::build(&compiled, ProviderSettings::default()).await {
        Ok(p) => p,
        Err(e) => {
            eline!("error: cannot set up the model providers: {e}");
            return ExitCode::from(2);
        }
    };
    let usage = match pennyworth::usage::store_from_env(&data_dir).await {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: cannot open the usage ledger: {e}");
            return ExitCode::FAILURE;
        }
    };
    let engine = Engine::with_providers(compiled, directory, providers)
        .identity_cache(pennyworth::auth::cache::IdentityCache::from_env())
        .usage_store(usage);
    if let Some(p) = engine.mcp().problems().first() {
        eprintln!("error: {p}");
        return ExitCode::from(2);
    }
    let engine = Arc::new(match jwt {
        Some(v) => engine.with_jwt(v),
        None => engine,
    });
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eline!("error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(listen);
    // Signal handlers before the listening line: a client may signal as soon as it reads it.
    let shutdown = server::shutdown_signal();
    say(format!("pennyworth listening on http://{addr}"));
    tracing::info!(%addr, config = %config.display(), data_dir = %data_dir.display(), "serving");
    // A second SIGINT or SIGTERM during the drain stops at once.
    let abort = async { server::shutdown_signal().await };
    let served = server::serve_until(engine.clone(), listener, shutdown, abort).await;
    // What is still queued for the ledger is written before the process ends.
    if let Err(e) = engine.ledger().flush().await {
        eprintln!("error: {e}");
    }
    match served {
        Ok(server::Stopped::Drained) => ExitCode::SUCCESS,
        Ok(server::Stopped::Aborted { .. }) => ExitCode::from(130),
        Err(e) => {
            eline!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn init(data_dir: PathBuf, admin: String, json: bool) -> ExitCode {
    let directory = match open_directory(&data_dir).await {
        Ok((d, _)) => d,
        Err(e) => {
            eline!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match auth::initialize(directory.as_ref(), &admin).await {
        Ok((user, _, key)) => {
            // `--json` is an explicit request for the key on stdout (scripts, tests).
            if json {
                say(serde_json::json!({"user": user.username, "key": key.expose()}));
            } else if let Err(e) = hand_over_key(&data_dir, &user.username, key.expose()) {
                eline!("error: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eline!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: PathBuf, deny_warnings: bool) -> ExitCode {
    match CompiledConfig::load(&config) {
        Ok(_) => {
            let warnings = pennyworth::config::lint::check_dir(&config);
            for w in &warnings {
                eline!("warning: {w}");
            }
            if deny_warnings && !warnings.is_empty() {
                eline!(
                    "configuration in `{}` has {} warning(s) and --deny-warnings is set",
                    config.display(),
                    warnings.len()
                );
                return ExitCode::FAILURE;
            }
            say(format!(
                "configuration in `{}` is valid{}",
                config.display(),
                match warnings.len() {
                    0 => String::new(),
                    n => format!(" ({n} warning(s) above)"),
                }
            ));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            report_config_errors(&config, &errors);
            ExitCode::FAILURE
        }
    }
}

/// One line on stderr and the command's exit code on failure.
fn remote(result: Result<(), cli::client::CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eline!("error: {e}");
            ExitCode::from(e.code)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve { .. }) {
        // One malloc arena per core, not eight: fewer arenas keep less freed memory
        // (doc/performance.md, "Under abuse"). Before the runtime starts its threads.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        pennyworth::memory::limit_arenas(i32::try_from(cores.max(2)).unwrap_or(2));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            cli::logging::init();
            eline!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Traces of `serve` go to an OTLP endpoint when one is configured (doc/observability.md).
    let exporter = match &cli.command {
        Command::Serve { .. } => {
            pennyworth::telemetry::export::from_env(|n| std::env::var(n).ok(), false)
        }
        _ => None,
    };
    let (telemetry, problem) = match exporter
        .map(|e| pennyworth::telemetry::export::install(&e, Some(runtime.handle().clone())))
    {
        Some(Ok((layer, guard))) => (Some((layer, guard)), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let (layer, telemetry) = match telemetry {
        Some((layer, guard)) => (Some(layer), Some(guard)),
        None => (None, None),
    };
    cli::logging::init_with(layer);
    if let Some(e) = problem {
        tracing::warn!(error = %e, "tracing is off");
    }
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
        } => {
            let code = runtime.block_on(serve(config, data_dir, listen));
            // Send the spans still queued while the runtime still runs the exporter's requests.
            drop(telemetry);
            // Cut connections still open after an aborted drain instead of waiting for them.
            runtime.shutdown_background();
            code
        }
        Command::Check {
            config,
            deny_warnings,
        } => check(config, deny_warnings),
        Command::Init {
            data_dir,
            admin,
            json,
        } => runtime.block_on(init(data_dir, admin, json)),
        Command::Login { args, remote: r } => remote(runtime.block_on(cli::login(&r, args))),
        Command::Logout => remote(cli::logout()),
        Command::Whoami { remote: r } => remote(runtime.block_on(cli::whoami(&r))),
        Command::Keys { command, remote: r } => remote(runtime.block_on(cli::keys(&r, command))),
        Command::Users { command, remote: r } => remote(runtime.block_on(cli::users(&r, command))),
        Command::Usage { args, remote: r } => remote(runtime.block_on(cli::usage::usage(&r, args))),
    }
}
