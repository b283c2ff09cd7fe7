//! A server that holds every request arriving during 200 ms of each second (see
//! `loadlab_loadtest::stall`), to see coordinated omission with your own eyes:
//!
//! ```sh
//! cargo run --release -p loadlab-loadtest --example stall-server -- 8099 &
//! cargo bench --bench loadtest -- --mode rate --rates 400 --connections 2 \
//!   --scenarios healthz --configs stall --extra stall=http://127.0.0.1:8099
//! ```
//!
//! The only argument is the port (default 8099); it listens on 127.0.0.1 until stopped.

use std::process::ExitCode;

use loadlab_loadtest::stall::{Stall, StallServer};

fn main() -> ExitCode {
    let port = match std::env::args().nth(1).map(|p| p.parse::<u16>()) {
        None => 8099,
        Some(Ok(port)) => port,
        Some(Err(e)) => {
            eprintln!("stall-server: the argument is a port number: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stall = Stall::default();
    let server = match StallServer::start(port, stall) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("stall-server: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "stall-server: listening on {} (holding requests during {} ms of every {} ms); \
            Ctrl-C stops it",
        server.url(),
        stall.window.as_millis(),
        stall.period.as_millis()
    );
    loop {
        std::thread::park();
    }
}
