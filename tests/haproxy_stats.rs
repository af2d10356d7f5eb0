//! Rollouts sharing one HAProxy read its `show stat` once per short period,
//! not once each: concurrent health and weight reads wait on the one read in
//! flight, and the weights it gives are the ones HAProxy applies.

mod harness;

use std::time::Duration;

use canaryd::router::{HaproxyConfig, HaproxyRouter, Health, StatsReader};
use canaryd::spec::units::Weight;
use harness::haproxy::Haproxy;
use harness::{instant, sample_app, wait_for};

fn routers(socket: &str, stats: &StatsReader, n: usize) -> Vec<HaproxyRouter> {
    (0..n)
        .map(|i| {
            HaproxyRouter::with_stats(
                HaproxyConfig {
                    socket: socket.to_string(),
                    backend: "app".into(),
                    stable_server: "stable".into(),
                    // Every other rollout names a server HAProxy does not have.
                    canary_server: if i % 2 == 0 { "canary" } else { "absent" }.into(),
                },
                stats.clone(),
            )
        })
        .collect()
}

/// Waits until HAProxy's own checks find both servers up.
async fn both_up(own: &HaproxyRouter) {
    wait_for("both servers up", Duration::from_secs(10), || async {
        let h = own.health().await;
        if h.stable && h.canary {
            Ok(())
        } else {
            Err(format!("{h:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticks_worth_of_health_calls_on_one_haproxy_reads_its_stats_once() {
    let stable = sample_app("checkout", "v1", instant()).await;
    let canary = sample_app("checkout", "v2", instant()).await;
    let haproxy = Haproxy::start(stable.addr(), canary.addr()).await;
    let own = haproxy.adapter("canary");
    both_up(&own).await;

    // Fresh for an hour: this test's calls all fall in one period.
    let stats = StatsReader::new(haproxy.socket.clone(), Duration::from_secs(3600));
    let rollouts = routers(&haproxy.socket, &stats, 40);
    let healths = futures::future::join_all(rollouts.iter().map(HaproxyRouter::health)).await;
    assert_eq!(stats.reads(), 1, "one `show stat` for 40 concurrent calls");
    for (i, h) in healths.iter().enumerate() {
        let expected = Health {
            stable: true,
            canary: i % 2 == 0,
        };
        assert_eq!(*h, expected, "rollout {i}");
    }
    // The next tick's calls within the period reuse it.
    for r in &rollouts {
        r.health().await;
    }
    assert_eq!(stats.reads(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticks_weights_come_from_the_shared_stats_and_match_what_haproxy_applies() {
    let stable = sample_app("checkout", "v1", instant()).await;
    let canary = sample_app("checkout", "v2", instant()).await;
    let haproxy = Haproxy::start(stable.addr(), canary.addr()).await;
    let own = haproxy.adapter("canary");
    both_up(&own).await;
    for percent in ["0%", "5%", "33.3%", "50%", "100%"] {
        let weight = Weight::parse(percent).expect("weight");
        own.set_weight(weight).await.expect("set");
        let applied = own.weight().await.expect("get weight");
        // A reader of its own, so this step's snapshot is taken after the write.
        let stats = StatsReader::new(haproxy.socket.clone(), Duration::from_secs(3600));
        let rollouts = routers(&haproxy.socket, &stats, 10);
        let reads = futures::future::join_all(rollouts.iter().map(HaproxyRouter::observe)).await;
        assert_eq!(
            stats.reads(),
            1,
            "one `show stat` for 10 rollouts at {percent}"
        );
        for (i, read) in reads.iter().enumerate() {
            if i % 2 == 0 {
                let w = read.weight.as_ref().expect("a weight from the snapshot");
                assert_eq!(*w, applied, "rollout {i} at {percent}");
                assert!(
                    read.health.stable && read.health.canary,
                    "{:?}",
                    read.health
                );
            } else {
                // No row for the server: `get weight` is asked, and refuses.
                let e = read.weight.as_ref().expect_err("unknown server");
                assert!(e.to_string().contains("No such server"), "{e}");
            }
        }
        // Within the period the snapshot answers with no round trip of its
        // own: a write made since is not seen (the controller re-reads
        // `get weight` before acting on a difference).
        own.set_weight(Weight::parse("20%").expect("weight"))
            .await
            .expect("set");
        let again = rollouts[0].observe().await.weight.expect("weight");
        assert_eq!(again, applied, "the snapshot's weight at {percent}");
    }
}

#[tokio::test]
async fn a_failed_stats_read_reports_every_caller_unready() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("no-such.sock").display().to_string();
    let stats = StatsReader::new(socket.clone(), Duration::from_secs(3600));
    let rollouts = routers(&socket, &stats, 10);
    let healths = futures::future::join_all(rollouts.iter().map(HaproxyRouter::health)).await;
    assert!(
        healths.iter().all(|h| *h == Health::default()),
        "{healths:?}"
    );
    let reads = futures::future::join_all(rollouts.iter().map(HaproxyRouter::observe)).await;
    assert!(reads.iter().all(|r| r.weight.is_err()), "{reads:?}");
    assert_eq!(
        stats.reads(),
        1,
        "the callers waited on the one failed read"
    );
}
