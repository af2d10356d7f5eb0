//! The `canaryd` binary: parses the command line and hands over to the library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    // Before any TLS client exists (kube, reqwest): one rustls provider.
    canaryd::cluster::tls::install_crypto_provider();
    canaryd::cli::main()
}
