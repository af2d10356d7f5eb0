//! A metric policy from arbitrary bytes: parsed; an accepted one renders
//! valid PromQL with hostile values and decodes the seed deploy file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    canaryd_fuzz::policy(data);
});
