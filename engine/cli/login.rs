//! `pennyworth login`: Cognito USER_PASSWORD_AUTH, tokens cached in the user's config dir with
//! 0600 permissions and refreshed with the refresh token when they expire.

use super::client::CliError;
use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::config::{BehaviorVersion, Region};
use aws_sdk_cognitoidentityprovider::error::ProvideErrorMetadata;
use aws_sdk_cognitoidentityprovider::types::AuthFlowType;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the user pool's app client is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pool {
    /// App client id.
    pub client_id: String,
    /// Region.
    pub region: String,
    /// Endpoint override (tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Cached tokens.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// Who logged in.
    pub username: String,
    /// The pool.
    pub pool: Pool,
    /// Access token (sent to the gateway).
    pub access_token: String,
    /// Refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires (Unix seconds).
    pub expires_at: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The token cache file: `$PENNYWORTH_CONFIG_HOME`, else `$XDG_CONFIG_HOME/pennyworth`, else
/// `~/.config/pennyworth`, then `credentials.json`.
pub fn session_path() -> Result<PathBuf, CliError> {
    let dir = std::env::var_os("PENNYWORTH_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("pennyworth"))
        })
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/pennyworth")))
        .ok_or_else(|| {
            CliError::local("cannot find a config directory: set HOME or PENNYWORTH_CONFIG_HOME")
        })?;
    Ok(dir.join("credentials.json"))
}

/// Writes the session file readable by its owner only.
pub fn save(session: &Session) -> Result<PathBuf, CliError> {
    use std::io::Write;
    let path = session_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::local(format!("cannot create `{}`: {e}", dir.display())))?;
    }
    let text = serde_json::to_vec_pretty(session).map_err(|e| CliError::local(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(&tmp)
        .map_err(|e| CliError::local(format!("cannot write `{}`: {e}", tmp.display())))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::local(format!("cannot write `{}`: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| CliError::local(format!("cannot write `{}`: {e}", path.display())))?;
    Ok(path)
}

/// Reads the session file, if any.
pub fn load() -> Result<Option<Session>, CliError> {
    let path = session_path()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CliError::local(format!(
                "`{}` is damaged ({e}); run `pennyworth login` again",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::local(format!(
            "cannot read `{}`: {e}",
            path.display()
        ))),
    }
}

/// Removes the session file.
pub fn logout() -> Result<bool, CliError> {
    let path = session_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CliError::local(format!(
            "cannot remove `{}`: {e}",
            path.display()
        ))),
    }
}

fn client(pool: &Pool) -> Client {
    let mut b = aws_sdk_cognitoidentityprovider::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .http_client(crate::aws::http_client())
        .region(Region::new(pool.region.clone()));
    if let Some(e) = &pool.endpoint {
        b = b.endpoint_url(e);
    }
    Client::from_conf(b.build())
}

fn auth_error(e: impl ProvideErrorMetadata) -> CliError {
    let code = e.code().unwrap_or("error").to_string();
    let message = e
        .message()
        .unwrap_or("Cognito refused the request")
        .to_string();
    CliError {
        message: format!("login failed: {message} ({code})"),
        code: 1,
    }
}

/// USER_PASSWORD_AUTH against the pool's app client.
pub async fn login(pool: Pool, username: &str, password: &str) -> Result<Session, CliError> {
    let out = client(&pool)
        .initiate_auth()
        .client_id(&pool.client_id)
        .auth_flow(AuthFlowType::UserPasswordAuth)
        .auth_parameters("USERNAME", username)
        .auth_parameters("PASSWORD", password)
        .send()
        .await
        .map_err(|e| auth_error(e.into_service_error()))?;
    if let Some(challenge) = out.challenge_name() {
        return Err(CliError {
            message: format!(
                "login needs the `{}` challenge, which this CLI does not answer; ask an admin to set a permanent password (`pennyworth users set-password`)",
                challenge.as_str()
            ),
            code: 1,
        });
    }
    let result = out
        .authentication_result()
        .ok_or_else(|| CliError::local("Cognito returned no tokens"))?;
    Ok(Session {
        username: username.to_string(),
        pool,
        access_token: result.access_token().unwrap_or_default().to_string(),
        refresh_token: result.refresh_token().map(str::to_string),
        expires_at: crate::directory::now() + i64::from(result.expires_in()),
    })
}

/// The cached access token, refreshed first when it expires within a minute.
pub async fn access_token() -> Result<Option<String>, CliError> {
    let Some(mut session) = load()? else {
        return Ok(None);
    };
    if session.expires_at - 60 > crate::directory::now() {
        return Ok(Some(session.access_token));
    }
    let Some(refresh) = session.refresh_token.clone() else {
        return Err(CliError::local(
            "the login has expired; run `pennyworth login` again",
        ));
    };
    let out = client(&session.pool)
        .initiate_auth()
        .client_id(&session.pool.client_id)
        .auth_flow(AuthFlowType::RefreshTokenAuth)
        .auth_parameters("REFRESH_TOKEN", refresh)
        .send()
        .await
        .map_err(|e| {
            let mut err = auth_error(e.into_service_error());
            err.message.push_str("; run `pennyworth login` again");
            err
        })?;
    let result = out.authentication_result().ok_or_else(|| {
        CliError::local("Cognito returned no tokens; run `pennyworth login` again")
    })?;
    session.access_token = result.access_token().unwrap_or_default().to_string();
    if let Some(r) = result.refresh_token() {
        session.refresh_token = Some(r.to_string());
    }
    session.expires_at = crate::directory::now() + i64::from(result.expires_in());
    save(&session)?;
    Ok(Some(session.access_token))
}
