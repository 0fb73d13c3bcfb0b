#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_tests::fuzzing::control_request(data));
