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
