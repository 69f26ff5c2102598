//! How long the cached control plane takes to start: from `ControlPlane::start` to a ready
//! apiserver with the `default` namespace, five times over, and then the same with
//! kube-controller-manager. Prints each run and the median; the target is under 10 s.
//!
//! Run with `cargo bench -p tests --bench controlplane_start`.

use std::time::{Duration, Instant};

use tests::ControlPlane;
use tests::controlplane::Options;

const RUNS: usize = 5;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

async fn measure(label: &str, controller_manager: bool) -> Duration {
    let mut samples = Vec::with_capacity(RUNS);
    for run in 1..=RUNS {
        let start = Instant::now();
        let cp = ControlPlane::start_with(Options {
            controller_manager,
            ..Options::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{label}: control plane did not start: {e}"));
        let took = start.elapsed();
        drop(cp);
        println!("{label}: run {run}: {:.2} s", took.as_secs_f64());
        samples.push(took);
    }
    let median = median(samples);
    println!(
        "{label}: median of {RUNS}: {:.2} s (target < 10 s)",
        median.as_secs_f64()
    );
    median
}

#[tokio::main]
async fn main() {
    // Build the tools first (if needed) so the first sample times a start, not a build.
    tests::controlplane::Binaries::locate().expect("control-plane tools");
    measure("etcd + kube-apiserver", false).await;
    measure("etcd + kube-apiserver + kube-controller-manager", true).await;
}
