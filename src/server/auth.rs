//! Who is calling: a bearer token ([`super::access`]), a browser session cookie
//! ([`super::session`], with its CSRF token on every state-changing request), or, only
//! when the server was started so, nobody in particular (the insecure anonymous admin).

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq as _;

use super::access::{AccessTable, Principal};
use super::api::ApiError;
use super::session::{CSRF_HEADER, Sessions, cookie};

/// What authenticates requests.
pub struct Auth {
    access: Arc<AccessTable>,
    sessions: Arc<Sessions>,
    anonymous: Option<Principal>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.access.len())
            .field("anonymous", &self.anonymous.is_some())
            .finish_non_exhaustive()
    }
}

/// A caller, and how it proved who it is.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// The session's CSRF token, for a caller with a session cookie.
    pub csrf: Option<String>,
}

impl Auth {
    /// Tokens from `access`, sessions in `sessions`; `anonymous`, when given, is the
    /// caller of requests that carry neither.
    pub fn new(
        access: Arc<AccessTable>,
        sessions: Arc<Sessions>,
        anonymous: Option<Principal>,
    ) -> Self {
        Self {
            access,
            sessions,
            anonymous,
        }
    }

    /// The token table.
    pub fn access(&self) -> &AccessTable {
        &self.access
    }

    /// The sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Whether requests without credentials are let in (as the anonymous admin).
    pub fn is_open(&self) -> bool {
        self.anonymous.is_some()
    }

    /// The caller of a read: a bearer token, else a live session cookie, else the
    /// anonymous caller when there is one; 401 otherwise.
    pub fn reader(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        if let Some(value) = bearer {
            let token = value
                .strip_prefix("Bearer ")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "Authorization: expected Bearer <token>",
                    )
                })?;
            return self
                .access
                .authenticate(token)
                .map(|p| Caller {
                    principal: p.clone(),
                    csrf: None,
                })
                .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"));
        }
        if let Some(id) = cookie(headers) {
            return match self.sessions.get(id) {
                Some((principal, csrf)) => Ok(Caller {
                    principal,
                    csrf: Some(csrf),
                }),
                None => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "the session has ended: log in again",
                )),
            };
        }
        match &self.anonymous {
            Some(p) => Ok(Caller {
                principal: p.clone(),
                csrf: None,
            }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "an Authorization: Bearer <token> header (or a session from /ui/login) is required",
            )),
        }
    }

    /// The caller of a state-changing request: as [`reader`](Self::reader), and a
    /// session caller must send the session's CSRF token in `X-CSRF-Token` (403
    /// otherwise).
    pub fn writer(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let caller = self.reader(headers)?;
        if let Some(expected) = &caller.csrf {
            let given = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "missing or wrong X-CSRF-Token for this session",
                ));
            }
        }
        Ok(caller)
    }
}
