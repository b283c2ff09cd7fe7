//! What the open-loop driver ([`crate::driver`]) sends for each scenario: the same
//! requests as the wrk scripts in `benches/wrk/` (a random valid ticket per insert, the
//! mixed scenario's fixed pattern), built in Rust because the driver is not wrk.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};

use crate::scenario::Scenario;

/// Where a run points: the socket address to connect to and the URL prefix.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port`, for connecting and for the `Host` header.
    pub(crate) authority: String,
    /// The base URL's path without a trailing slash (usually empty).
    pub(crate) prefix: String,
}

impl Target {
    /// Parses a configuration's base URL (`http://127.0.0.1:8080`).
    pub(crate) fn parse(base: &str) -> Result<Self, String> {
        let uri: hyper::Uri = base.parse().map_err(|e| format!("`{base}`: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("`{base}`: only http:// URLs are supported"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{base}`: no host"))?;
        let authority = if authority.port().is_some() {
            authority.to_string()
        } else {
            format!("{}:80", authority.host())
        };
        Ok(Self {
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// The mixed scenario's cycle, as in `benches/wrk/mixed.lua`: H healthz, I insert, R
/// randoms of 1000 (60%, 25%, 15%).
const MIXED_PATTERN: &[u8] = b"HIHRHIHHIHRHIHHIHRHH";

/// Makes one connection's requests, in order.
pub(crate) struct RequestMaker {
    scenario: Scenario,
    target: Target,
    /// Position in [`MIXED_PATTERN`].
    step: usize,
    /// xorshift64* state: tickets need variety, not cryptographic quality.
    rng: u64,
}

impl RequestMaker {
    /// A maker for `scenario` against `target`; `seed` varies the tickets per connection.
    pub(crate) fn new(scenario: Scenario, target: Target, seed: u64) -> Self {
        Self {
            scenario,
            target,
            step: 0,
            // Never zero: xorshift would stay at zero.
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// The next request.
    pub(crate) fn next_request(&mut self) -> Result<Request<Full<Bytes>>, String> {
        let kind = match self.scenario {
            Scenario::Mixed => {
                let kind = MIXED_PATTERN[self.step % MIXED_PATTERN.len()];
                self.step += 1;
                kind
            }
            Scenario::Insert => b'I',
            Scenario::Healthz | Scenario::Randoms1e3 | Scenario::Randoms1e6 => b'G',
        };
        let path = match kind {
            b'H' => "/healthz",
            b'R' => "/api/randoms?cant=1000",
            b'I' => "/app/insert",
            _ => self.scenario.path(),
        };
        let uri = format!("{}{path}", self.target.prefix);
        let builder = Request::builder()
            .uri(uri)
            .header(HOST, self.target.authority.as_str());
        let request = if kind == b'I' {
            builder
                .method("POST")
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(self.ticket_body())))
        } else {
            builder.method("GET").body(Full::new(Bytes::new()))
        };
        request.map_err(|e| format!("building a request: {e}"))
    }

    /// Six distinct numbers in 1..=60 (a partial Fisher-Yates shuffle, as insert.lua).
    fn ticket_body(&mut self) -> String {
        let mut pool: [u8; 60] = std::array::from_fn(|i| i as u8 + 1);
        for i in 0..6 {
            let j = i + (self.next_random() % (60 - i) as u64) as usize;
            pool.swap(i, j);
        }
        let n = &pool[..6];
        format!(
            "{{\"num1\":{},\"num2\":{},\"num3\":{},\"num4\":{},\"num5\":{},\"num6\":{}}}",
            n[0], n[1], n[2], n[3], n[4], n[5]
        )
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
