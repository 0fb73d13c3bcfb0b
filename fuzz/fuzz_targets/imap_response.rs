#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_tests::fuzzing::imap_response(data));
