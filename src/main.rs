//! The `canaryd` binary: parses the command line and hands over to the library.
#![forbid(unsafe_code)]

/// mimalloc: a tick at thousands of rollouts allocates and frees many small
/// series and strings from both worker threads; glibc's arenas kept several
/// times the live memory resident (BENCHMARKS.md, *Scale*). The `mimalloc`
/// feature (on by default) can be turned off for heap profiling.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Before any TLS client exists (kube, reqwest): one rustls provider.
    canaryd::cluster::tls::install_crypto_provider();
    canaryd::cli::main()
}
