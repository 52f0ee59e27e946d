//! Browser sessions: after logging in with a token, the browser holds a session cookie
//! (`HttpOnly`, `SameSite=Strict`) naming a random session ID; the session remembers the
//! caller and a CSRF token, which every state-changing request made with the cookie must
//! echo in the `X-CSRF-Token` header (the pages carry it in a `<meta>` tag). Sessions live
//! in the process and end after [`SESSION_TTL`] or at logout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};

use super::access::Principal;

/// The session cookie's name.
pub const COOKIE: &str = "kargo_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once (the oldest go first).
pub const MAX_SESSIONS: usize = 10_000;

struct Session {
    principal: Principal,
    csrf: String,
    expires: Instant,
}

/// The live sessions.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// 32 random bytes from the OS, hex-encoded; `None` if the OS has none to give.
fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A session just made: the cookie's value and the CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The session ID (the cookie's value).
    pub id: String,
    /// The CSRF token.
    pub csrf: String,
}

impl Sessions {
    /// A session for `principal`; `None` when the OS gives no randomness.
    pub fn create(&self, principal: Principal) -> Option<NewSession> {
        let id = random_token()?;
        let csrf = random_token()?;
        let now = Instant::now();
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                principal,
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Some(NewSession { id, csrf })
    }

    /// The caller and CSRF token of session `id`, if it is live.
    pub fn get(&self, id: &str) -> Option<(Principal, String)> {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| (s.principal.clone(), s.csrf.clone()))
    }

    /// Ends session `id`.
    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }
}

/// The session cookie's value in `headers`, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that stores session `id` for the pages under `path`.
pub fn set_cookie(id: &str, path: &str) -> String {
    format!(
        "{COOKIE}={id}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(path: &str) -> String {
    format!("{COOKIE}=; Path={path}; HttpOnly; SameSite=Strict; Max-Age=0")
}
