//! A deploy file as JSON (the custom resource's carrier), from arbitrary
//! bytes: parsed, decoded through `spec::yaml::from_json`, a valid spec
//! planned and ticked once.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    canaryd_fuzz::deploy_json(data);
});
