//! The deploy files of a run: one per synthetic service, on the shared
//! HAProxy's backend of the same number, with a long first step so every
//! rollout stays Progressing (and measured every interval) during the run.

use std::path::Path;
use std::time::Duration;

use crate::exporter::service;
use crate::procs::backend;

/// Deploy file `i`, its first step lasting `minutes`.
pub fn deploy_file(i: usize, socket: &Path, interval: Duration, minutes: u64) -> String {
    format!(
        "service: {service}\n\
         policy: http-red\n\
         router: {{ kind: haproxy, socket: \"{socket}\", backend: {backend}, stable_server: stable, canary_server: canary }}\n\
         stable: {{ version: v1 }}\n\
         canary: {{ version: v2 }}\n\
         deploy:\n\
         \x20 strategy: canary\n\
         \x20 analysis: {{ interval: {interval}s, window: 1m }}\n\
         \x20 steps:\n\
         \x20   - deploy: 10%\n\
         \x20     duration: {minutes}m\n\
         \x20     metrics:\n\
         \x20       - error_rate_less_than: 1%\n\
         \x20       - latency_p99_less_than: 500ms\n\
         \x20   - deploy: 100%\n\
         \x20 rollback:\n\
         \x20   auto: true\n\
         \x20   on:\n\
         \x20     - error_rate_greater_than: 5%\n\
         \x20     - latency_p99_greater_than: 1s\n",
        service = service(i),
        socket = socket.display(),
        backend = backend(i),
        interval = interval.as_secs().max(1),
    )
}

/// The file name of deploy file `i`.
pub fn file_name(i: usize) -> String {
    format!("{}.yaml", service(i))
}

/// Writes the `n` deploy files into `dir`.
pub fn write_all(
    dir: &Path,
    n: usize,
    socket: &Path,
    interval: Duration,
    first_step: Duration,
) -> Result<(), String> {
    let minutes = (first_step.as_secs() / 60).max(1);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for i in 0..n {
        let path = dir.join(file_name(i));
        std::fs::write(&path, deploy_file(i, socket, interval, minutes))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
