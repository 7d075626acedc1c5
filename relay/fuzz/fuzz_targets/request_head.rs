//! `http::parse_head` (the pure request-head parser) and the WebSocket upgrade check on
//! arbitrary bytes: never panics; a complete head never claims more bytes than it was given
//! nor a body above the limit.
#![no_main]

use cohort_relay::http::{self, Head, MAX_BODY_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Head::Complete {
        request,
        head_len,
        body_len,
    }) = http::parse_head(data)
    {
        assert!(head_len <= data.len());
        assert!(head_len <= http::MAX_HEAD_BYTES);
        assert!(body_len <= MAX_BODY_BYTES);
        let _ = cohort_relay::ws::accept(&request);
        let _ = http::resolve_static(std::path::Path::new("/srv/www"), &request.path);
        let _ = request.keep_alive();
    }
});
