//! [`TokenFile`]: bearer tokens read from a file, one a line, checked in constant time;
//! used for the front's admin actions (`--admin-token-file`) and for the service's
//! write routes (`--write-token-file`).
//!
//! A request presents a token as `Authorization: Bearer TOKEN`. Only the SHA-256 of
//! each token is kept, and a presented token is hashed and compared with every one of
//! them with `subtle`, so neither the time taken nor an early exit tells an attacker
//! how much of a guess was right, or how long a token is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::listen::error::json_error;

/// The tokens of one file; [`TokenFile::reload`] re-reads it (on SIGHUP). Its `Debug`
/// shows the file and the count, never the digests (`check-config` prints it).
pub struct TokenFile {
    path: PathBuf,
    /// SHA-256 of each token; swapped whole by a reload, read without a lock.
    digests: ArcSwap<Vec<[u8; 32]>>,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile")
            .field("path", &self.path)
            .field("tokens", &self.digests.load().len())
            .finish()
    }
}

/// What a request's `Authorization` header is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A bearer token from the file.
    Granted,
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token not in the file.
    Wrong,
}

impl TokenFile {
    /// Reads the tokens of `path`: one a line, surrounding blanks trimmed, empty lines
    /// and lines starting with `#` skipped. A file without a token is refused (it
    /// would lock everyone out).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            digests: ArcSwap::from_pointee(read_digests(path)?),
        })
    }

    /// Reads the file again; on failure the tokens in use stay. Returns how many
    /// tokens it now holds.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let digests = read_digests(&self.path)?;
        let count = digests.len();
        self.digests.store(Arc::new(digests));
        Ok(count)
    }

    /// The file the tokens come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the bearer token of `headers`.
    pub fn check(&self, headers: &HeaderMap) -> Access {
        let Some(token) = bearer(headers) else {
            return Access::Missing;
        };
        let presented: [u8; 32] = Sha256::digest(token).into();
        let digests = self.digests.load();
        // Every digest is compared, whichever matches: no early exit.
        let mut found = subtle::Choice::from(0);
        for digest in digests.iter() {
            found |= digest.ct_eq(&presented);
        }
        if bool::from(found) {
            Access::Granted
        } else {
            Access::Wrong
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn read_digests(path: &Path) -> anyhow::Result<Vec<[u8; 32]>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let digests: Vec<[u8; 32]> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|token| Sha256::digest(token.as_bytes()).into())
        .collect();
    if digests.is_empty() {
        bail!("the token file {} holds no token", path.display());
    }
    Ok(digests)
}

/// 401 JSON with `WWW-Authenticate: Bearer`: the answer to a missing or wrong token.
pub fn unauthorized(access: Access) -> Response {
    let message = match access {
        Access::Missing => "this needs a token: send Authorization: Bearer TOKEN",
        _ => "the bearer token is not valid",
    };
    let mut response = json_error(StatusCode::UNAUTHORIZED, message);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).expect("ascii"),
        );
        headers
    }

    #[test]
    fn only_listed_tokens_are_granted_and_a_reload_replaces_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# operators\nalpha\n\n  beta  \n").expect("write");
        let tokens = TokenFile::load(&path).expect("two tokens");
        assert_eq!(tokens.check(&headers("Bearer alpha")), Access::Granted);
        assert_eq!(tokens.check(&headers("bearer beta")), Access::Granted);
        assert_eq!(tokens.check(&headers("Bearer alph")), Access::Wrong);
        assert_eq!(tokens.check(&headers("Bearer # operators")), Access::Wrong);
        assert_eq!(tokens.check(&headers("Basic alpha")), Access::Missing);
        assert_eq!(tokens.check(&HeaderMap::new()), Access::Missing);

        std::fs::write(&path, "gamma\n").expect("write");
        assert_eq!(tokens.reload().expect("one token"), 1);
        assert_eq!(tokens.check(&headers("Bearer alpha")), Access::Wrong);
        assert_eq!(tokens.check(&headers("Bearer gamma")), Access::Granted);

        std::fs::write(&path, "\n# none\n").expect("write");
        assert!(tokens.reload().is_err(), "an empty file is refused");
        assert_eq!(
            tokens.check(&headers("Bearer gamma")),
            Access::Granted,
            "a failed reload keeps the tokens"
        );
    }
}
