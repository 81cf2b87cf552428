//! moto's server (PyPI `moto[server]`) on 127.0.0.1 for the Cognito tests: started once per
//! test binary, stopped when the binary exits (a shell watchdog kills it when our stdin pipe
//! closes), and a fresh user pool per test.

use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cognitoidentityprovider::types::{
    AttributeDataType, ExplicitAuthFlowsType, SchemaAttributeType, StringAttributeConstraintsType,
};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";

struct Server {
    endpoint: String,
    _child: Mutex<Child>,
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();

fn moto_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PENNYWORTH_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo_root().join(".venv/bin/moto_server"));
    path.exists().then_some(path)
}

fn start() -> Option<Server> {
    let Some(bin) = moto_binary() else {
        let required = std::env::var("PENNYWORTH_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "moto_server not found: run `scripts/test`, which installs moto[server] into .venv"
        );
        eprintln!(
            "SKIPPED: moto_server not found (.venv/bin/moto_server); run `scripts/test` to include the Cognito tests"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    // The watchdog shell kills moto when this process's end of the pipe closes.
    let script = format!(
        "\"$0\" -H 127.0.0.1 -p {port} >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill $pid 2>/dev/null"
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .arg(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            let _ = s.write_all(b"GET /moto-api/ HTTP/1.0\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not start on {endpoint}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Server {
        endpoint,
        _child: Mutex::new(child),
    })
}

/// The moto endpoint, or `None` when moto is not installed (and not required).
pub fn endpoint() -> Option<String> {
    SERVER
        .get_or_init(start)
        .as_ref()
        .map(|s| s.endpoint.clone())
}

/// An SDK client for moto.
pub fn client(endpoint: &str) -> Client {
    let config = aws_sdk_cognitoidentityprovider::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .http_client(pennyworth::aws::http_client())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

/// A user pool as the deployment template creates it.
pub struct Pool {
    pub endpoint: String,
    pub pool_id: String,
    pub client_id: String,
    pub client: Client,
}

/// Creates a pool with the key attribute, the three groups and a CLI app client.
pub async fn pool() -> Option<Pool> {
    let endpoint = endpoint()?;
    let client = client(&endpoint);
    let attribute = |name: String| {
        SchemaAttributeType::builder()
            .name(name)
            .attribute_data_type(AttributeDataType::String)
            .mutable(true)
            .string_attribute_constraints(
                StringAttributeConstraintsType::builder()
                    .min_length("0")
                    .max_length("2048")
                    .build(),
            )
            .build()
    };
    let mut create = client
        .create_user_pool()
        .pool_name(format!("pennyworth-test-{}", std::process::id()))
        .schema(attribute("pw_keys".into()));
    for i in 0..pennyworth::directory::cognito_keys::SLOTS {
        create = create.schema(attribute(format!("pw_key{i}")));
    }
    let pool = create.send().await.expect("create pool");
    let pool_id = pool
        .user_pool()
        .and_then(|p| p.id())
        .expect("pool id")
        .to_string();
    for g in ["admins", "developers", "users"] {
        client
            .create_group()
            .user_pool_id(&pool_id)
            .group_name(g)
            .send()
            .await
            .expect("create group");
    }
    let app = client
        .create_user_pool_client()
        .user_pool_id(&pool_id)
        .client_name("cli")
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
        .send()
        .await
        .expect("create client");
    let client_id = app
        .user_pool_client()
        .and_then(|c| c.client_id())
        .expect("client id")
        .to_string();
    Some(Pool {
        endpoint,
        pool_id,
        client_id,
        client,
    })
}

impl Pool {
    /// The Cognito directory over this pool.
    /// Key writes settle for 50 ms (moto answers at once and no other process writes).
    pub async fn directory(&self) -> pennyworth::directory::cognito::CognitoDirectory {
        self.directory_with(pennyworth::directory::cognito_keys::KeyTiming {
            max_staleness: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(5),
            settle: Duration::from_millis(50),
        })
        .await
    }

    /// The Cognito directory with the given key write timing.
    pub async fn directory_with(
        &self,
        key_timing: pennyworth::directory::cognito_keys::KeyTiming,
    ) -> pennyworth::directory::cognito::CognitoDirectory {
        pennyworth::directory::cognito::CognitoDirectory::new(
            pennyworth::directory::cognito::CognitoSettings {
                pool_id: self.pool_id.clone(),
                region: REGION.into(),
                endpoint: Some(self.endpoint.clone()),
                static_credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into())),
                key_timing,
            },
        )
        .await
    }
}
