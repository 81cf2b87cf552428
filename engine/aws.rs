//! What every AWS SDK client of the gateway shares.

use aws_sdk_cognitoidentityprovider::config::SharedHttpClient;
use aws_smithy_http_client::tls;

/// The HTTPS client for AWS SDK clients: hyper with rustls on the `ring` provider (no cmake or
/// C toolchain beyond what `ring` needs), shared by every SDK client of the process.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The shared configuration of an AWS SDK client in `region`: fixed credentials when given
/// (tests, local servers), else the default credential chain; `endpoint` instead of the AWS
/// one when set (a local server speaking the service's protocol).
pub async fn sdk_config(
    region: &str,
    endpoint: Option<&str>,
    static_credentials: Option<&(String, String)>,
) -> aws_config::SdkConfig {
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_cognitoidentityprovider::config::{Credentials, SharedCredentialsProvider};
    let region = Region::new(region.to_string());
    match static_credentials {
        Some((id, secret)) => {
            let mut b = aws_config::SdkConfig::builder()
                .behavior_version(BehaviorVersion::latest())
                .http_client(http_client())
                .region(region)
                .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                    id,
                    secret,
                    None,
                    None,
                    "pennyworth-static",
                )));
            if let Some(e) = endpoint {
                b = b.endpoint_url(e);
            }
            b.build()
        }
        None => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http_client())
                .region(region);
            if let Some(e) = endpoint {
                loader = loader.endpoint_url(e);
            }
            loader.load().await
        }
    }
}
