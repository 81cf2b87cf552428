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

#[derive(Parser)]
#[command(
    name = "pennyworth",
    version,
    about = "OpenAI-compatible gateway over AWS Bedrock and other LLMs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    remote: cli::Remote,
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
    },
    /// Create the first admin user and API key in an empty store.
    Init {
        /// Data directory of the embedded store.
        #[arg(long, env = "PENNYWORTH_DATA_DIR", default_value = ".pennyworth")]
        data_dir: PathBuf,
        /// Name of the admin user.
        #[arg(long, default_value = "admin")]
        admin: String,
    },
    /// Log in to the Cognito user pool (password on stdin); tokens are cached for later commands.
    Login(cli::LoginArgs),
    /// Forget the cached login.
    Logout,
    /// Show who the gateway thinks you are.
    Whoami,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(cli::KeysCommand),
    /// Manage users (admins).
    #[command(subcommand)]
    Users(cli::UsersCommand),
    /// Usage and cost: yours, a user's (--user) or everyone's (--all).
    Usage(cli::usage::UsageArgs),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PENNYWORTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("PENNYWORTH_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}

fn report_config_errors(dir: &Path, errors: &pennyworth::config::ConfigErrors) {
    eprintln!(
        "configuration in `{}` has {} problem(s):",
        dir.display(),
        errors.0.len()
    );
    for e in &errors.0 {
        eprintln!("  {e}");
    }
}

fn print_key(user: &str, key: &str) {
    println!();
    println!("  Created admin user `{user}` with API key (shown once, store it now):");
    println!();
    println!("    {key}");
    println!();
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
            eprintln!("error: {e}");
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
    let (directory, jwt) = match open_directory(&data_dir).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match directory.user_count().await {
        Ok(0) => match auth::initialize(directory.as_ref(), "admin").await {
            Ok((user, _, key)) => print_key(&user.username, key.expose()),
            Err(e) => {
                eprintln!("error: cannot initialize the store: {e}");
                return ExitCode::FAILURE;
            }
        },
        Ok(_) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let providers = match Providers::build(&compiled, ProviderSettings::default()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot set up the model providers: {e}");
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
    let engine = Arc::new(match jwt {
        Some(v) => engine.with_jwt(v),
        None => engine,
    });
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(listen);
    println!("pennyworth listening on http://{addr}");
    tracing::info!(%addr, config = %config.display(), data_dir = %data_dir.display(), "serving");
    let served = server::serve(engine.clone(), listener, server::shutdown_signal()).await;
    // What is still queued for the ledger is written before the process ends.
    if let Err(e) = engine.ledger().flush().await {
        eprintln!("error: {e}");
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn init(data_dir: PathBuf, admin: String, json: bool) -> ExitCode {
    let directory = match open_directory(&data_dir).await {
        Ok((d, _)) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match auth::initialize(directory.as_ref(), &admin).await {
        Ok((user, _, key)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"user": user.username, "key": key.expose()})
                );
            } else {
                print_key(&user.username, key.expose());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: PathBuf) -> ExitCode {
    match CompiledConfig::load(&config) {
        Ok(_) => {
            println!("configuration in `{}` is valid", config.display());
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
            eprintln!("error: {e}");
            ExitCode::from(e.code)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
        } => runtime.block_on(serve(config, data_dir, listen)),
        Command::Check { config } => check(config),
        Command::Init { data_dir, admin } => {
            runtime.block_on(init(data_dir, admin, cli.remote.json))
        }
        Command::Login(args) => remote(runtime.block_on(cli::login(&cli.remote, args))),
        Command::Logout => remote(cli::logout()),
        Command::Whoami => remote(runtime.block_on(cli::whoami(&cli.remote))),
        Command::Keys(cmd) => remote(runtime.block_on(cli::keys(&cli.remote, cmd))),
        Command::Users(cmd) => remote(runtime.block_on(cli::users(&cli.remote, cmd))),
        Command::Usage(args) => remote(runtime.block_on(cli::usage::usage(&cli.remote, args))),
    }
}
