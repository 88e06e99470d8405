//! TLS set-up shared by every client the process builds (kube, octocrab, oci-client).

/// Choose rustls' `ring` crypto provider for the process. Both of rustls' providers are
/// compiled into the workspace (see the workspace Cargo.toml), so rustls cannot pick one by
/// itself and kube would panic. Call before building any client; calling again is harmless.
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
