//! `canaryd crd`: prints the Rollout CustomResourceDefinition, generated from
//! the Rust types (`kubectl apply -f -`, or `deploy/kubernetes/crd.yaml`).

use std::process::ExitCode;

/// Prints the CRD as YAML.
pub fn run() -> ExitCode {
    match crate::cluster::crd::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot render the CRD: {e}");
            ExitCode::FAILURE
        }
    }
}
