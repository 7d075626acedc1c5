//! Arbitrary bytes on one relay connection (after TLS): the request-head parser, routing,
//! static files, the API, the WebSocket upgrade, frame decoding and both WebSocket sessions,
//! over an in-memory duplex stream. Must never panic or hang. See
//! `cohort_relay::harness::connection_bytes` for how the first byte picks a mode.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cohort_relay::harness;
use cohort_relay::server::Handler;
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

struct World {
    rt: Runtime,
    handler: Arc<Handler>,
    _closing: tokio::sync::watch::Sender<bool>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let web = std::env::temp_dir().join("cohort-relay-fuzz-web");
        let _ = std::fs::create_dir_all(&web);
        let _ = std::fs::write(web.join("index.html"), "<!doctype html><title>fuzz</title>");
        let (handler, closing) = rt.block_on(harness::handler(web));
        World {
            rt,
            handler,
            _closing: closing,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let bytes = harness::connection_bytes(data);
    w.rt.block_on(harness::serve_bytes(
        w.handler.clone(),
        &bytes,
        Duration::from_secs(10),
    ));
});
