//! The management CLI: a pure REST client of the gateway (`whoami`, `keys`, `users`) plus
//! `login`/`logout` against the Cognito user pool. Human tables by default, `--json` for
//! scripts; an API error is one line on stderr and a non-zero exit.

pub mod client;
pub mod logging;
pub mod login;
pub mod output;
pub mod usage;

use client::{Api, CliError};
use reqwest::Method;
use serde_json::{Value, json};

/// Where the gateway is and who is calling; shared by every remote command.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// Gateway base URL.
    #[arg(
        long,
        global = true,
        env = "PENNYWORTH_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api_url: String,
    /// API key (default: the token of `pennyworth login`).
    #[arg(
        long,
        global = true,
        env = "PENNYWORTH_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `pennyworth keys ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key (shown once).
    Create {
        /// Label.
        #[arg(long)]
        name: String,
        /// Owner (default: you).
        #[arg(long)]
        user: Option<String>,
        /// Lifetime in days (default: none).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List keys (metadata only).
    List {
        /// Another user's keys.
        #[arg(long, conflicts_with = "all")]
        user: Option<String>,
        /// Every key you may list.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a key.
    Revoke {
        /// Key id.
        id: String,
    },
    /// Revoke every key of a user (default: you), e.g. after a key leaked.
    RevokeAll {
        /// Whose keys (admins: anyone; others: themselves).
        #[arg(long)]
        user: Option<String>,
    },
    /// Replace a key by a new one (shown once); the old one stops working.
    Rotate {
        /// Key id.
        id: String,
    },
}

/// `pennyworth users ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UsersCommand {
    /// Create a user.
    Create {
        /// User name.
        username: String,
        /// E-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Group (repeatable): admins, developers, users.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Read an initial password from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Show one user.
    Show {
        /// User name.
        username: String,
    },
    /// Change groups or enable/disable.
    Update {
        /// User name.
        username: String,
        /// Replace the groups (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Remove the user from every group.
        #[arg(long, conflicts_with = "groups")]
        no_groups: bool,
        /// Enable the user.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable the user.
        #[arg(long)]
        disable: bool,
    },
    /// Delete a user and their keys.
    Delete {
        /// User name.
        username: String,
    },
    /// Set a user's password (read from stdin).
    SetPassword {
        /// User name.
        username: String,
    },
}

/// `pennyworth login`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(long)]
    pub username: String,
    /// The user pool's app client id.
    #[arg(long, env = "PENNYWORTH_USER_POOL_CLIENT_ID")]
    pub client_id: String,
    /// Region of the user pool.
    #[arg(long, env = "AWS_REGION")]
    pub region: String,
    /// Cognito endpoint override.
    #[arg(long, env = "PENNYWORTH_COGNITO_ENDPOINT")]
    pub cognito_endpoint: Option<String>,
}

fn read_secret(what: &str) -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::local(format!("cannot read the {what} from stdin: {e}")))?;
    let secret = line.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(CliError::local(format!("no {what} on stdin")));
    }
    Ok(secret)
}

async fn api(remote: &Remote) -> Result<Api, CliError> {
    let credential = match &remote.api_key {
        Some(k) if !k.trim().is_empty() => Some(k.trim().to_string()),
        _ => login::access_token().await?,
    };
    if credential.is_none() {
        return Err(CliError::local(
            "no credentials: set PENNYWORTH_API_KEY (or --api-key), or run `pennyworth login`",
        ));
    }
    Api::new(&remote.api_url, credential)
}

fn key_rows(items: &[Value]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|k| {
            vec![
                output::cell(&k["id"]),
                output::cell(&k["name"]),
                output::cell(&k["user"]),
                output::time(&k["created_at"]),
                output::time(&k["expires_at"]),
                format!("…{}", output::cell(&k["last4"])),
            ]
        })
        .collect()
}

const KEY_HEADERS: &[&str] = &["id", "name", "user", "created", "expires", "ends"];

fn print_issued(remote: &Remote, v: &Value) {
    if remote.json {
        output::json(v);
        return;
    }
    output::table(KEY_HEADERS, &key_rows(std::slice::from_ref(v)));
    output::line("");
    output::line("Key (shown once, store it now):");
    output::line(output::cell(&v["key"]));
}

fn user_rows(items: &[Value]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|u| {
            vec![
                output::cell(&u["username"]),
                output::cell(&u["email"]),
                output::cell(&u["groups"]),
                if u["enabled"] == json!(true) {
                    "yes".into()
                } else {
                    "no".into()
                },
                output::time(&u["created_at"]),
            ]
        })
        .collect()
}

const USER_HEADERS: &[&str] = &["username", "email", "groups", "enabled", "created"];

fn print_users(remote: &Remote, v: &Value, items: &[Value]) {
    if remote.json {
        output::json(v);
    } else {
        output::table(USER_HEADERS, &user_rows(items));
    }
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `pennyworth whoami`.
pub async fn whoami(remote: &Remote) -> Result<(), CliError> {
    let v = api(remote)
        .await?
        .call(Method::GET, "/whoami", None)
        .await?;
    if remote.json {
        output::json(&v);
    } else {
        output::table(
            &["user", "groups", "auth", "key"],
            &[vec![
                output::cell(&v["user"]),
                output::cell(&v["groups"]),
                output::cell(&v["auth"]),
                output::cell(&v["key_id"]),
            ]],
        );
    }
    Ok(())
}

/// `pennyworth keys ...`.
pub async fn keys(remote: &Remote, cmd: KeysCommand) -> Result<(), CliError> {
    let api = api(remote).await?;
    match cmd {
        KeysCommand::Create {
            name,
            user,
            expires_in_days,
        } => {
            let mut body = json!({"name": name});
            if let Some(u) = user {
                body["user"] = json!(u);
            }
            if let Some(d) = expires_in_days {
                body["expires_in_days"] = json!(d);
            }
            let v = api.call(Method::POST, "/keys", Some(body)).await?;
            print_issued(remote, &v);
        }
        KeysCommand::List { user, all } => {
            let path = match (user, all) {
                (_, true) => "/keys?all=true".to_string(),
                (Some(u), false) => format!("/keys?user={}", encode(&u)),
                (None, false) => "/keys".to_string(),
            };
            let v = api.call(Method::GET, &path, None).await?;
            if remote.json {
                output::json(&v);
            } else {
                let items = v["data"].as_array().cloned().unwrap_or_default();
                output::table(KEY_HEADERS, &key_rows(&items));
            }
        }
        KeysCommand::Revoke { id } => {
            let v = api
                .call(Method::DELETE, &format!("/keys/{}", encode(&id)), None)
                .await?;
            if remote.json {
                output::json(&v);
            } else {
                output::line(format!("revoked {id}"));
            }
        }
        KeysCommand::RevokeAll { user } => {
            let path = match &user {
                Some(u) => format!("/keys?user={}", encode(u)),
                None => "/keys".to_string(),
            };
            let v = api.call(Method::DELETE, &path, None).await?;
            if remote.json {
                output::json(&v);
            } else {
                let n = v["revoked"].as_array().map_or(0, Vec::len);
                let who = v["user"].as_str().unwrap_or_default();
                output::line(format!("revoked {n} key(s) of {who}"));
            }
        }
        KeysCommand::Rotate { id } => {
            let v = api
                .call(Method::POST, &format!("/keys/{}/rotate", encode(&id)), None)
                .await?;
            print_issued(remote, &v);
        }
    }
    Ok(())
}

/// `pennyworth users ...`.
pub async fn users(remote: &Remote, cmd: UsersCommand) -> Result<(), CliError> {
    let api = api(remote).await?;
    let user_path = |u: &str| format!("/admin/users/{}", encode(u));
    match cmd {
        UsersCommand::Create {
            username,
            email,
            groups,
            password_stdin,
        } => {
            let mut body = json!({"username": username, "groups": groups});
            if let Some(e) = email {
                body["email"] = json!(e);
            }
            if password_stdin {
                body["password"] = json!(read_secret("password")?);
            }
            let v = api.call(Method::POST, "/admin/users", Some(body)).await?;
            print_users(remote, &v, std::slice::from_ref(&v));
        }
        UsersCommand::List => {
            let v = api.call(Method::GET, "/admin/users", None).await?;
            let items = v["data"].as_array().cloned().unwrap_or_default();
            print_users(remote, &v, &items);
        }
        UsersCommand::Show { username } => {
            let v = api.call(Method::GET, &user_path(&username), None).await?;
            print_users(remote, &v, std::slice::from_ref(&v));
        }
        UsersCommand::Update {
            username,
            groups,
            no_groups,
            enable,
            disable,
        } => {
            let mut body = json!({});
            if !groups.is_empty() || no_groups {
                body["groups"] = json!(groups);
            }
            if enable || disable {
                body["enabled"] = json!(enable);
            }
            let v = api
                .call(Method::PATCH, &user_path(&username), Some(body))
                .await?;
            print_users(remote, &v, std::slice::from_ref(&v));
        }
        UsersCommand::Delete { username } => {
            let v = api
                .call(Method::DELETE, &user_path(&username), None)
                .await?;
            if remote.json {
                output::json(&v);
            } else {
                output::line(format!("deleted {username}"));
            }
        }
        UsersCommand::SetPassword { username } => {
            let password = read_secret("password")?;
            let v = api
                .call(
                    Method::POST,
                    &format!("{}/password", user_path(&username)),
                    Some(json!({"password": password})),
                )
                .await?;
            if remote.json {
                output::json(&v);
            } else {
                output::line(format!("password set for {username}"));
            }
        }
    }
    Ok(())
}

/// `pennyworth login` (password read from stdin).
pub async fn login(remote: &Remote, args: LoginArgs) -> Result<(), CliError> {
    let password = read_secret("password")?;
    let pool = login::Pool {
        client_id: args.client_id,
        region: args.region,
        endpoint: args.cognito_endpoint,
    };
    let session = login::login(pool, &args.username, &password).await?;
    let path = login::save(&session)?;
    if remote.json {
        output::json(
            &json!({"user": session.username, "expires_at": session.expires_at, "credentials": path}),
        );
    } else {
        output::line(format!(
            "logged in as {} (tokens in {})",
            session.username,
            path.display()
        ));
    }
    Ok(())
}

/// `pennyworth logout`.
pub fn logout() -> Result<(), CliError> {
    if login::logout()? {
        output::line("logged out");
    } else {
        output::line("not logged in");
    }
    Ok(())
}
