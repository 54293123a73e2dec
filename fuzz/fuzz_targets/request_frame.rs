#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_broker::fuzzing::request_frame(data));
