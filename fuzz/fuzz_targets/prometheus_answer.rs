//! Prometheus' JSON answer to an instant query, from arbitrary bytes, as a
//! gate's reading.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    canaryd_fuzz::prometheus_answer(data);
});
