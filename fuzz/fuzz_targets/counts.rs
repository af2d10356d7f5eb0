//! The seed rollout's count answers (one Prometheus answer per line, in the
//! batch's order, tick after tick) turned into counters and histograms and
//! judged by the engine.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    canaryd_fuzz::counts(data);
});
