//! A deploy file as YAML, from arbitrary bytes: decoded, its diagnostics
//! rendered against the text, a valid spec planned and ticked once.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    canaryd_fuzz::deploy_yaml(data);
});
