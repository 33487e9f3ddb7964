//! A server for tests: its own tokio runtime, a free loopback port, stopped when dropped.

use epitome::serve::batcher::Backend;
use epitome::serve::{start, Running, ServeConfig, Suggesting};
use std::net::SocketAddr;
use std::sync::Arc;

pub struct TestServer {
    pub runtime: tokio::runtime::Runtime,
    pub running: Option<Running>,
}

impl TestServer {
    /// Serves `backend` with `config` (on a free port whatever its address).
    pub fn start<B: Backend>(
        config: ServeConfig,
        backend: B,
        text: epitome::text::TextEncoder,
        info: serde_json::Value,
        suggesting: Option<Arc<Suggesting>>,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..config
        };
        let running = runtime
            .block_on(start(config, backend, text, info, suggesting))
            .unwrap();
        Self {
            runtime,
            running: Some(running),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.as_ref().unwrap().addr
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = self.runtime.block_on(r.stop());
        }
    }
}
