//! Repository URL normalisation, bit-compatible with Kargo's `pkg/urls`.
//!
//! Kargo compares repository URLs (and derives Freight IDs from them) after
//! normalising them with Go's `net/url`, `path` and go-containerregistry's
//! reference parser. The three public functions here reproduce that behaviour,
//! quirks included, so that IDs and comparisons agree with a Kargo cluster:
//!
//! * [`normalize_git_url`]: Git repository URLs (http(s), ssh and SCP forms).
//! * [`normalize_image_repo`]: container image repositories (Docker Hub forms
//!   collapse to the bare repository path).
//! * [`normalize_chart_repo`]: Helm chart repositories (`oci://` dropped, then
//!   treated as an image repository).
//!
//! Inputs that cannot be normalised come back exactly as given.
//!
//! The private [`GoUrl`] type emulates the parts of Go 1.26's `net/url` that
//! these functions rely on (`Parse`, `URL.String`, `URL.Query`), including
//! Go 1.26's strict handling of colons in http(s) hosts.

use std::net::Ipv6Addr;

/// The Docker Hub registry name go-containerregistry substitutes when a
/// reference names no registry.
const DEFAULT_REGISTRY: &str = "index.docker.io";

/// Normalises a Git repository URL the way Kargo's `urls.NormalizeGit` does.
///
/// * The input is lowercased and stripped of non-printable characters and of
///   surrounding spaces first.
/// * `http://` / `https://` URLs lose any user information; one trailing `/`
///   and then one trailing `.git` are removed from the path. A URL carrying
///   query parameters is returned exactly as given (not even lowercased).
/// * `ssh://` URLs get the same treatment but keep their user information.
/// * SCP-style `[user@]host[:path]` becomes `ssh://[user@]host[/path]`.
/// * Anything else (or anything Go's URL parser rejects) is returned as given.
///
/// ```
/// use kargo_core::freight::normalize_git_url;
/// assert_eq!(
///     normalize_git_url("https://user:pw@GitHub.com/Example/Repo.git/"),
///     "https://github.com/example/repo"
/// );
/// assert_eq!(
///     normalize_git_url("git@github.com:example/repo.git"),
///     "ssh://git@github.com/example/repo"
/// );
/// ```
pub fn normalize_git_url(repo: &str) -> String {
    let lowered = sanitize_url(&go_to_lower(repo));

    let is_http = lowered.starts_with("http://") || lowered.starts_with("https://");
    if is_http || lowered.starts_with("ssh://") {
        let Some(mut url) = GoUrl::parse(&lowered) else {
            return repo.to_owned();
        };
        if query_has_values(&url.raw_query) {
            return repo.to_owned();
        }
        if is_http {
            url.user = None;
        }
        trim_git_path(&mut url.path);
        return url.to_go_string();
    }

    // SCP-style `[user@]host[:path]`.
    let Some((user_host, path)) = split_scp(&lowered) else {
        return repo.to_owned();
    };
    let Some(mut path_url) = GoUrl::parse(path) else {
        return repo.to_owned();
    };
    trim_git_path(&mut path_url.path);
    if path_url.path.is_empty() {
        return format!("ssh://{user_host}");
    }
    format!("ssh://{user_host}/{}", path_url.to_go_string())
}

/// Normalises a container image repository the way Kargo's
/// `urls.NormalizeImage` does.
///
/// The lowercased input is parsed as an image reference (go-containerregistry,
/// weak validation; any tag or digest is dropped). Docker Hub repositories
/// (no registry, `docker.io`, `index.docker.io` or `registry-1.docker.io`)
/// become the bare repository path without a leading `library/`; others
/// become `<registry>/<repository>`. Unparseable input is returned as given.
///
/// ```
/// use kargo_core::freight::normalize_image_repo;
/// assert_eq!(normalize_image_repo("docker.io/library/nginx"), "nginx");
/// assert_eq!(normalize_image_repo("GHCR.io/Example/App:1.0"), "ghcr.io/example/app");
/// ```
pub fn normalize_image_repo(repo: &str) -> String {
    let cleaned = sanitize_url(&go_to_lower(repo));
    let Some(reference) = parse_image_reference(&cleaned) else {
        return repo.to_owned();
    };
    let path = reference.repository_str();
    if reference.registry == DEFAULT_REGISTRY || reference.registry == "registry-1.docker.io" {
        return path.strip_prefix("library/").unwrap_or(&path).to_owned();
    }
    format!("{}/{}", reference.registry, path)
}

/// Normalises a Helm chart repository URL the way Kargo's
/// `urls.NormalizeChart` does.
///
/// Input Go's URL parser rejects is returned as given. Otherwise the input is
/// lowercased, a leading `oci://` is removed and the rest goes through
/// [`normalize_image_repo`]. Classic `https://` repository URLs therefore come
/// out lowercased but otherwise mostly intact, except that a port directly
/// after the host with nothing behind it is taken for an image tag and dropped
/// (`https://charts.example.com:8443` becomes `https://charts.example.com`).
///
/// ```
/// use kargo_core::freight::normalize_chart_repo;
/// assert_eq!(normalize_chart_repo("oci://registry-1.docker.io/bitnamicharts/nginx"),
///            "bitnamicharts/nginx");
/// assert_eq!(normalize_chart_repo("https://Charts.Example.com"), "https://charts.example.com");
/// ```
pub fn normalize_chart_repo(repo: &str) -> String {
    let sanitized = sanitize_url(repo);
    if GoUrl::parse(&sanitized).is_none() {
        return repo.to_owned();
    }
    let lowered = go_to_lower(&sanitized);
    normalize_image_repo(lowered.strip_prefix("oci://").unwrap_or(&lowered))
}

/// Go's `path.Join(a, b)`: joins the non-empty elements with `/` and cleans
/// the result; two empty elements give an empty string.
pub(crate) fn path_join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => String::new(),
        (false, true) => path_clean(a),
        (true, false) => path_clean(b),
        (false, false) => path_clean(&format!("{a}/{b}")),
    }
}

/// Go's `path.Clean`: collapses repeated slashes, drops `.` segments, resolves
/// `..` segments lexically and removes any trailing slash.
fn path_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if segments.last().is_some_and(|last| *last != "..") {
                    segments.pop();
                } else if !rooted {
                    segments.push("..");
                }
            }
            other => segments.push(other),
        }
    }
    let joined = segments.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `strings.ToLower`: the simple (one-to-one) lowercase mapping of each
/// character. Only U+0130 has a multi-character full mapping; Go maps it to `i`.
fn go_to_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Kargo's `urls.SanitizeURL`: drops every character Go's `unicode.IsPrint`
/// rejects (anywhere in the string), then trims surrounding whitespace.
fn sanitize_url(s: &str) -> String {
    let printable: String = s.chars().filter(|c| is_go_print(*c)).collect();
    // After filtering, the ASCII space is the only whitespace left.
    printable.trim_matches(' ').to_owned()
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and
/// the ASCII space. Rejects control (Cc), format (Cf), private-use (Co)
/// characters, separators (Z*) other than U+0020 and noncharacters. Unassigned
/// code points are not detected (Go rejects them too).
fn is_go_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() {
        return false;
    }
    let u = u32::from(c);
    if (u & 0xFFFE) == 0xFFFE || (0xFDD0..=0xFDEF).contains(&u) {
        return false;
    }
    !matches!(
        u,
        // Separators (Zs, Zl, Zp) other than the ASCII space.
        0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
        // Format characters (Cf).
        | 0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
        // Private use (Co).
        | 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD
    )
}

/// Removes one trailing `/` and then one trailing `.git` from a decoded path.
fn trim_git_path(path: &mut Vec<u8>) {
    if path.ends_with(b"/") {
        path.pop();
    }
    if path.ends_with(b".git") {
        path.truncate(path.len() - 4);
    }
}

/// Splits an SCP-style `[user@]host[:path]` string as Kargo's
/// `^((?:[\w-]+@)?[\w-]+(?:\.[\w-]+)*)(?::(.*))?$` does (`\w` is ASCII).
/// Returns the `[user@]host` part and the (possibly empty) path.
fn split_scp(s: &str) -> Option<(&str, &str)> {
    if s.contains('\n') {
        return None;
    }
    let (user_host, path) = s.split_once(':').unwrap_or((s, ""));
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let host = match user_host.split_once('@') {
        Some((user, host)) if word(user) => host,
        Some(_) => return None,
        None => user_host,
    };
    host.split('.').all(word).then_some((user_host, path))
}

// ---------------------------------------------------------------------------
// Image references (go-containerregistry `pkg/name`, weak validation, v0.21.7)
// ---------------------------------------------------------------------------

/// A parsed image reference: its registry and repository.
struct ImageReference {
    registry: String,
    repository: String,
}

impl ImageReference {
    /// The repository path, with `library/` prepended for single-segment Docker
    /// Hub repositories (`RepositoryStr`).
    fn repository_str(&self) -> String {
        if !self.repository.contains('/') && self.registry == DEFAULT_REGISTRY {
            format!("library/{}", self.repository)
        } else {
            self.repository.clone()
        }
    }

    /// `<registry>/<repository_str>` (`Repository.Name`).
    fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository_str())
    }
}

/// `name.ParseReference(s, name.WeakValidation)`: a tag reference, else a
/// digest reference.
fn parse_image_reference(s: &str) -> Option<ImageReference> {
    parse_tag_reference(s).or_else(|| parse_digest_reference(s))
}

/// `name.NewTag`: `[registry/]repository[:tag]`.
fn parse_tag_reference(s: &str) -> Option<ImageReference> {
    // The text after the last `:` is a tag unless it contains a `/` (then the
    // colon belongs to a registry port).
    let base = match s.rsplit_once(':') {
        Some((head, tag)) if !tag.contains('/') => {
            let tag_ok = (1..=128).contains(&tag.len())
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if !tag_ok {
                return None;
            }
            head
        }
        _ => s,
    };
    parse_repository(base)
}

/// `name.NewDigest`: `<reference>@sha256:<64 hex>`.
fn parse_digest_reference(s: &str) -> Option<ImageReference> {
    let mut parts = s.split('@');
    let (Some(base), Some(digest), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let hex = digest.strip_prefix("sha256:")?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    match parse_tag_reference(base) {
        Some(tagged) => parse_repository(&tagged.name()),
        None => parse_repository(base),
    }
}

/// `name.NewRepository`: the first path segment is a registry when it is
/// `localhost` or contains `.` or `:`.
fn parse_repository(s: &str) -> Option<ImageReference> {
    if s.is_empty() {
        return None;
    }
    let (registry, repository) = match s.split_once('/') {
        Some((first, rest))
            if first == "localhost" || first.contains('.') || first.contains(':') =>
        {
            (first, rest)
        }
        _ => ("", s),
    };
    // go-containerregistry v0.21.7 (pinned by Kargo) demands at least two
    // characters; later releases accept one.
    let repository_ok = (2..=255).contains(&repository.len())
        && repository
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'/'));
    if !repository_ok || !registry_is_valid(registry) {
        return None;
    }
    let registry = match registry {
        "" | "docker.io" => DEFAULT_REGISTRY,
        other => other,
    };
    Some(ImageReference {
        registry: registry.to_owned(),
        repository: repository.to_owned(),
    })
}

/// `name.checkRegistry`: `//<name>` must parse as a URL whose host is exactly
/// `name`.
fn registry_is_valid(name: &str) -> bool {
    GoUrl::parse(&format!("//{name}")).is_some_and(|url| url.host == name.as_bytes())
}

// ---------------------------------------------------------------------------
// Go 1.26 net/url emulation
// ---------------------------------------------------------------------------

/// The parts of a URL that differ in their escaping rules (`net/url`'s
/// `encoding` modes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    Zone,
    UserPassword,
    QueryComponent,
    Fragment,
}

/// User information of a parsed URL (`url.Userinfo`), decoded.
#[derive(Clone)]
struct UserInfo {
    username: Vec<u8>,
    password: Option<Vec<u8>>,
}

/// A URL as Go's `url.Parse` leaves it. Decoded parts are bytes (escapes may
/// decode to invalid UTF-8); raw parts are substrings of the input.
#[derive(Clone, Default)]
struct GoUrl {
    scheme: String,
    opaque: String,
    user: Option<UserInfo>,
    host: Vec<u8>,
    path: Vec<u8>,
    raw_path: String,
    omit_host: bool,
    force_query: bool,
    raw_query: String,
    fragment: Vec<u8>,
    raw_fragment: String,
}

impl GoUrl {
    /// `url.Parse`. `None` wherever Go returns an error.
    fn parse(raw: &str) -> Option<Self> {
        let (rest, fragment) = raw.split_once('#').unwrap_or((raw, ""));
        let mut url = Self::parse_without_fragment(rest)?;
        if !fragment.is_empty() {
            url.fragment = unescape(fragment, Mode::Fragment)?;
            if escape(&url.fragment, Mode::Fragment) != fragment {
                url.raw_fragment = fragment.to_owned();
            }
        }
        Some(url)
    }

    fn parse_without_fragment(raw: &str) -> Option<Self> {
        if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return None;
        }
        let mut url = Self::default();
        if raw == "*" {
            url.path = b"*".to_vec();
            return Some(url);
        }
        let (scheme, mut rest) = split_scheme(raw)?;
        url.scheme = scheme.to_ascii_lowercase();

        if rest.ends_with('?') && rest.matches('?').count() == 1 {
            url.force_query = true;
            rest = &rest[..rest.len() - 1];
        } else if let Some((before, query)) = rest.split_once('?') {
            rest = before;
            url.raw_query = query.to_owned();
        }

        if !rest.starts_with('/') {
            if !url.scheme.is_empty() {
                url.opaque = rest.to_owned();
                return Some(url);
            }
            let first_segment = rest.split('/').next().unwrap_or_default();
            if first_segment.contains(':') {
                return None;
            }
        }

        if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
            let after = &rest[2..];
            let (authority, path) = match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            };
            let (user, host) = parse_authority(&url.scheme, authority)?;
            url.user = user;
            url.host = host;
            rest = path;
        } else if !url.scheme.is_empty() && rest.starts_with('/') {
            url.omit_host = true;
        }

        url.path = unescape(rest, Mode::Path)?;
        if escape(&url.path, Mode::Path) != rest {
            url.raw_path = rest.to_owned();
        }
        Some(url)
    }

    /// `URL.EscapedPath`.
    fn escaped_path(&self) -> String {
        if !self.raw_path.is_empty()
            && valid_encoded(&self.raw_path, Mode::Path)
            && unescape(&self.raw_path, Mode::Path).as_deref() == Some(self.path.as_slice())
        {
            return self.raw_path.clone();
        }
        if self.path == b"*" {
            return "*".to_owned();
        }
        escape(&self.path, Mode::Path)
    }

    /// `URL.EscapedFragment`.
    fn escaped_fragment(&self) -> String {
        if !self.raw_fragment.is_empty()
            && valid_encoded(&self.raw_fragment, Mode::Fragment)
            && unescape(&self.raw_fragment, Mode::Fragment).as_deref()
                == Some(self.fragment.as_slice())
        {
            return self.raw_fragment.clone();
        }
        escape(&self.fragment, Mode::Fragment)
    }

    /// `URL.String`.
    fn to_go_string(&self) -> String {
        let mut buf = String::new();
        if !self.scheme.is_empty() {
            buf.push_str(&self.scheme);
            buf.push(':');
        }
        if !self.opaque.is_empty() {
            buf.push_str(&self.opaque);
        } else {
            let no_authority = self.omit_host && self.host.is_empty() && self.user.is_none();
            if (!self.scheme.is_empty() || !self.host.is_empty() || self.user.is_some())
                && !no_authority
            {
                if !self.host.is_empty() || !self.path.is_empty() || self.user.is_some() {
                    buf.push_str("//");
                }
                if let Some(user) = &self.user {
                    buf.push_str(&escape(&user.username, Mode::UserPassword));
                    if let Some(password) = &user.password {
                        buf.push(':');
                        buf.push_str(&escape(password, Mode::UserPassword));
                    }
                    buf.push('@');
                }
                if !self.host.is_empty() {
                    buf.push_str(&escape(&self.host, Mode::Host));
                }
            }
            let mut path = self.escaped_path();
            if no_authority && path.starts_with("//") {
                buf.push_str("%2F");
                path.remove(0);
            }
            if !path.is_empty() && !path.starts_with('/') && !self.host.is_empty() {
                buf.push('/');
            }
            if buf.is_empty() && path.split('/').next().is_some_and(|s| s.contains(':')) {
                buf.push_str("./");
            }
            buf.push_str(&path);
        }
        if self.force_query || !self.raw_query.is_empty() {
            buf.push('?');
            buf.push_str(&self.raw_query);
        }
        if !self.fragment.is_empty() {
            buf.push('#');
            buf.push_str(&self.escaped_fragment());
        }
        buf
    }
}

/// `getScheme`: `Some((scheme, rest))`, the scheme empty when there is none;
/// `None` for a leading `:` ("missing protocol scheme").
fn split_scheme(raw: &str) -> Option<(&str, &str)> {
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return None,
            b':' => return Some((&raw[..i], &raw[i + 1..])),
            _ => return Some(("", raw)),
        }
    }
    Some(("", raw))
}

/// `parseAuthority`: `[userinfo@]host`; the last `@` separates them.
fn parse_authority(scheme: &str, authority: &str) -> Option<(Option<UserInfo>, Vec<u8>)> {
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return Some((None, parse_host(scheme, authority)?));
    };
    let host = parse_host(scheme, host)?;
    let valid = userinfo
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c));
    if !valid {
        return None;
    }
    let user = match userinfo.split_once(':') {
        None => UserInfo {
            username: unescape(userinfo, Mode::UserPassword)?,
            password: None,
        },
        Some((username, password)) => UserInfo {
            username: unescape(username, Mode::UserPassword)?,
            password: Some(unescape(password, Mode::UserPassword)?),
        },
    };
    Some((Some(user), host))
}

/// `parseHost` (Go 1.26): bracketed hosts must hold an IPv6 address, and an
/// http(s) host may contain a single colon only (`urlstrictcolons=1`).
fn parse_host(scheme: &str, host: &str) -> Option<Vec<u8>> {
    if let Some(open) = host.rfind('[') {
        if open > 0 {
            return None;
        }
        let close = host.rfind(']')?;
        let colon_port = &host[close + 1..];
        if !valid_optional_port(colon_port) {
            return None;
        }
        let port = unescape(colon_port, Mode::Host)?;
        let hostname = &host[1..close];
        let mut unescaped = match hostname.find("%25") {
            Some(zone) => {
                let mut address = unescape(&hostname[..zone], Mode::Host)?;
                address.extend(unescape(&hostname[zone..], Mode::Zone)?);
                address
            }
            None => unescape(hostname, Mode::Host)?,
        };
        if !is_ipv6_literal(&unescaped) {
            return None;
        }
        let mut out = vec![b'['];
        out.append(&mut unescaped);
        out.push(b']');
        out.extend(port);
        return Some(out);
    }
    if let Some(first) = host.find(':') {
        let last = host.rfind(':').unwrap_or(first);
        let strict = scheme == "http" || scheme == "https";
        let at = if strict { first } else { last };
        if !valid_optional_port(&host[at..]) {
            return None;
        }
    }
    unescape(host, Mode::Host)
}

/// `netip.ParseAddr(s)` succeeding with an IPv6 address (zone allowed).
fn is_ipv6_literal(s: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(s) else {
        return false;
    };
    let address = match s.split_once('%') {
        Some((_, "")) => return false,
        Some((address, _zone)) => address,
        None => s,
    };
    address.parse::<Ipv6Addr>().is_ok()
}

/// `validOptionalPort`: empty, or `:` followed by digits only.
fn valid_optional_port(port: &str) -> bool {
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
}

/// `len(url.Query()) > 0`: whether Go's `ParseQuery` finds any well-formed
/// parameter (it gives up, finding none, beyond 10 000 parameters).
fn query_has_values(raw_query: &str) -> bool {
    if raw_query.matches('&').count() + 1 > 10_000 {
        return false;
    }
    raw_query.split('&').any(|pair| {
        if pair.is_empty() || pair.contains(';') {
            return false;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        unescape(key, Mode::QueryComponent).is_some()
            && unescape(value, Mode::QueryComponent).is_some()
    })
}

/// `shouldEscape`.
fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    // Host sub-delimiters, plus `:`, `[`, `]` (ports and IPv6 literals) and
    // `<`, `>`, `"` (which hosts could not %-encode anyway).
    if matches!(mode, Mode::Host | Mode::Zone) && b"!$&'()*+,;=:[]<>\"".contains(&c) {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => return false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => match mode {
            Mode::Path => return c == b'?',
            Mode::UserPassword => return matches!(c, b'@' | b'/' | b'?' | b':'),
            Mode::QueryComponent => return true,
            Mode::Fragment => return false,
            Mode::Host | Mode::Zone => {}
        },
        _ => {}
    }
    if mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*') {
        return false;
    }
    true
}

/// `unescape`: decodes `%XX` escapes (and `+` in query components). `None`
/// for malformed escapes or characters a host may not contain.
fn unescape(s: &str, mode: Mode) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value)?;
                let lo = bytes.get(i + 2).copied().and_then(hex_value)?;
                let is_25 = hi == 2 && lo == 5;
                if mode == Mode::Host && hi < 8 && !is_25 {
                    return None;
                }
                let value = (hi << 4) | lo;
                if mode == Mode::Zone && !is_25 && value != b' ' && should_escape(value, Mode::Host)
                {
                    return None;
                }
                out.push(value);
                i += 3;
            }
            b'+' => {
                out.push(if mode == Mode::QueryComponent {
                    b' '
                } else {
                    b'+'
                });
                i += 1;
            }
            b => {
                if matches!(mode, Mode::Host | Mode::Zone) && b < 0x80 && should_escape(b, mode) {
                    return None;
                }
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// `escape` (never called in query-component mode here, so spaces always
/// become `%20`).
fn escape(bytes: &[u8], mode: Mode) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if should_escape(b, mode) {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// `validEncoded`: no byte that `escape` would have escaped, except the
/// sub-delimiters, `:`, `@`, `[`, `]` and `%`.
fn valid_encoded(s: &str, mode: Mode) -> bool {
    s.bytes()
        .all(|b| b"!$&'()*+,;=:@[]%".contains(&b) || !should_escape(b, mode))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:5be1ecc7935f1dd85635d4feedaf660594030253cc97c9e9ca3819ffeac36b65";

    fn check(f: fn(&str) -> String, cases: &[(&str, &str)]) {
        for (input, expected) in cases {
            assert_eq!(f(input), *expected, "input {input:?}");
        }
    }

    /// Kargo's own `TestNormalizeGit` table (`pkg/urls/git_test.go`).
    #[test]
    fn git_kargo_table() {
        check(
            normalize_git_url,
            &[
                ("https://not a url", "https://not a url"),
                (
                    "http://github.com/example/repo?foo=bar",
                    "http://github.com/example/repo?foo=bar",
                ),
                ("ssh://not a url", "ssh://not a url"),
                (
                    "ssh://github.com/example/repo?foo=bar",
                    "ssh://github.com/example/repo?foo=bar",
                ),
                ("not even remotely a url", "not even remotely a url"),
                ("https://github.com", "https://github.com"),
                ("https://github.com/", "https://github.com"),
                ("https://foo:bar@github.com", "https://github.com"),
                ("https://foo:bar@github.com/", "https://github.com"),
                (
                    "https://github.com/example/repo",
                    "https://github.com/example/repo",
                ),
                (
                    "https://github.com/example/repo/",
                    "https://github.com/example/repo",
                ),
                (
                    "https://github.com/example/repo.git",
                    "https://github.com/example/repo",
                ),
                (
                    "https://github.com/example/repo.git/",
                    "https://github.com/example/repo",
                ),
                (
                    "https://localhost:8443/example/repo",
                    "https://localhost:8443/example/repo",
                ),
                (
                    "https://localhost:8443/example/repo/",
                    "https://localhost:8443/example/repo",
                ),
                (
                    "https://localhost:8443/example/repo.git",
                    "https://localhost:8443/example/repo",
                ),
                (
                    "https://localhost:8443/example/repo.git/",
                    "https://localhost:8443/example/repo",
                ),
                (
                    "https://foo:bar@github.com/example/repo",
                    "https://github.com/example/repo",
                ),
                (
                    "https://foo:bar@github.com/example/repo/",
                    "https://github.com/example/repo",
                ),
                (
                    "https://foo:bar@github.com/example/repo.git",
                    "https://github.com/example/repo",
                ),
                (
                    "https://foo:bar@github.com/example/repo.git/",
                    "https://github.com/example/repo",
                ),
                (
                    "https://foo:bar@localhost:8443/example/repo",
                    "https://localhost:8443/example/repo",
                ),
                (
                    "https://foo:bar@localhost:8443/example/repo/",
                    "https://localhost:8443/example/repo",
                ),
                (
                    "https://foo:bar@localhost:8443/example/repo.git",
                    "https://localhost:8443/example/repo",
                ),
                (
                    "https://foo:bar@localhost:8443/example/repo.git/",
                    "https://localhost:8443/example/repo",
                ),
                ("ssh://git.example.com", "ssh://git.example.com"),
                ("ssh://git.example.com/", "ssh://git.example.com"),
                ("ssh://git@git.example.com", "ssh://git@git.example.com"),
                ("ssh://git@git.example.com/", "ssh://git@git.example.com"),
                (
                    "ssh://github.com/example/repo",
                    "ssh://github.com/example/repo",
                ),
                (
                    "ssh://github.com/example/repo/",
                    "ssh://github.com/example/repo",
                ),
                (
                    "ssh://github.com/example/repo.git",
                    "ssh://github.com/example/repo",
                ),
                (
                    "ssh://github.com/example/repo.git/",
                    "ssh://github.com/example/repo",
                ),
                (
                    "ssh://localhost:2222/example/repo",
                    "ssh://localhost:2222/example/repo",
                ),
                (
                    "ssh://localhost:2222/example/repo/",
                    "ssh://localhost:2222/example/repo",
                ),
                (
                    "ssh://localhost:2222/example/repo.git",
                    "ssh://localhost:2222/example/repo",
                ),
                (
                    "ssh://localhost:2222/example/repo.git/",
                    "ssh://localhost:2222/example/repo",
                ),
                (
                    "ssh://git@github.com/example/repo",
                    "ssh://git@github.com/example/repo",
                ),
                (
                    "ssh://git@github.com/example/repo/",
                    "ssh://git@github.com/example/repo",
                ),
                (
                    "ssh://git@github.com/example/repo.git",
                    "ssh://git@github.com/example/repo",
                ),
                (
                    "ssh://git@github.com/example/repo.git/",
                    "ssh://git@github.com/example/repo",
                ),
                (
                    "ssh://git@localhost:2222/example/repo",
                    "ssh://git@localhost:2222/example/repo",
                ),
                (
                    "ssh://git@localhost:2222/example/repo/",
                    "ssh://git@localhost:2222/example/repo",
                ),
                (
                    "ssh://git@localhost:2222/example/repo.git",
                    "ssh://git@localhost:2222/example/repo",
                ),
                (
                    "ssh://git@localhost:2222/example/repo.git/",
                    "ssh://git@localhost:2222/example/repo",
                ),
                ("git.example.com", "ssh://git.example.com"),
                ("git@git.example.com", "ssh://git@git.example.com"),
                ("github.com:example/repo", "ssh://github.com/example/repo"),
                ("github.com:example/repo/", "ssh://github.com/example/repo"),
                (
                    "github.com:example/repo.git",
                    "ssh://github.com/example/repo",
                ),
                (
                    "github.com:example/repo.git/",
                    "ssh://github.com/example/repo",
                ),
                (
                    "git@github.com:example/repo",
                    "ssh://git@github.com/example/repo",
                ),
                (
                    "git@github.com:example/repo/",
                    "ssh://git@github.com/example/repo",
                ),
                (
                    "git@github.com:example/repo.git",
                    "ssh://git@github.com/example/repo",
                ),
                (
                    "git@github.com:example/repo.git/",
                    "ssh://git@github.com/example/repo",
                ),
            ],
        );
    }

    /// Go `net/url` behaviour Kargo's table does not cover.
    #[test]
    fn git_quirks() {
        check(
            normalize_git_url,
            &[
                // Lowercased, invisible characters and surrounding space dropped.
                (
                    "HTTPS://GitHub.com/Example/Repo.git",
                    "https://github.com/example/repo",
                ),
                (
                    "\u{FEFF} https://github.com/example/\u{200B}repo.git \n",
                    "https://github.com/example/repo",
                ),
                // Query parameters: the ORIGINAL input comes back, case and all...
                (
                    "HTTP://GitHub.com/Example/Repo?Foo=Bar",
                    "HTTP://GitHub.com/Example/Repo?Foo=Bar",
                ),
                // ...but a bare `?` or a query Go finds no parameter in is kept.
                (
                    "https://github.com/example/repo.git?",
                    "https://github.com/example/repo?",
                ),
                (
                    "https://github.com/example/repo.git?a;b",
                    "https://github.com/example/repo?a;b",
                ),
                // Fragments survive, after the path is trimmed.
                (
                    "https://github.com/example/repo.git#main",
                    "https://github.com/example/repo#main",
                ),
                // Only one `/` and one `.git` are trimmed.
                (
                    "https://github.com/example/repo.git.git",
                    "https://github.com/example/repo.git",
                ),
                (
                    "https://github.com/example/repo//",
                    "https://github.com/example/repo/",
                ),
                // Escapes: kept while the path is untouched, re-encoded once trimmed.
                ("https://github.com/a%2Fb", "https://github.com/a%2fb"),
                ("https://github.com/a%2Fb.git", "https://github.com/a/b"),
                (
                    "https://github.com/example/repo%zz",
                    "https://github.com/example/repo%zz",
                ),
                // Non-ASCII host bytes are percent-encoded.
                (
                    "https://bücher.example/repo.git",
                    "https://b%C3%BCcher.example/repo",
                ),
                // Go 1.26 rejects extra colons in http(s) hosts, not in ssh hosts.
                (
                    "https://localhost:80:80/repo",
                    "https://localhost:80:80/repo",
                ),
                (
                    "ssh://localhost:22:22/repo.git",
                    "ssh://localhost:22:22/repo",
                ),
                ("https://[::1]:8443/repo.git", "https://[::1]:8443/repo"),
                ("https://[127.0.0.1]/repo", "https://[127.0.0.1]/repo"),
                (
                    "https://user name@github.com/x",
                    "https://user name@github.com/x",
                ),
                ("https:///example/repo.git", "https:///example/repo"),
                // SCP form: the path is parsed as a URL of its own.
                ("git@github.com:", "ssh://git@github.com"),
                ("github.com:foo:bar", "ssh://github.com"),
                (
                    "github.com:example/repo?x=1",
                    "ssh://github.com/example/repo?x=1",
                ),
                ("user@host@github.com:x", "user@host@github.com:x"),
                ("", ""),
            ],
        );
    }

    /// Kargo's own `TestNormalizeImage` table (`pkg/urls/image_test.go`).
    #[test]
    fn image_kargo_table() {
        check(
            normalize_image_repo,
            &[
                ("index.docker.io/library/busybox", "busybox"),
                ("index.docker.io/busybox", "busybox"),
                ("registry-1.docker.io/library/busybox", "busybox"),
                ("registry-1.docker.io/busybox", "busybox"),
                ("docker.io/library/busybox", "busybox"),
                ("docker.io/busybox", "busybox"),
                ("library/busybox", "busybox"),
                ("busybox", "busybox"),
                ("index.docker.io/example/repo", "example/repo"),
                ("docker.io/example/repo", "example/repo"),
                ("example/repo", "example/repo"),
                ("ghcr.io/example/repo", "ghcr.io/example/repo"),
                ("quay.io/example/repo", "quay.io/example/repo"),
                ("invalid url", "invalid url"),
            ],
        );
    }

    #[test]
    fn image_quirks() {
        let with_digest = format!("nginx:1.27@{DIGEST}");
        let registry_digest = format!("my.registry.io:5000/team/app@{DIGEST}");
        check(
            normalize_image_repo,
            &[
                ("GHCR.io/Example/Repo:1.0", "ghcr.io/example/repo"),
                (&with_digest, "nginx"),
                (&registry_digest, "my.registry.io:5000/team/app"),
                // Unparseable input comes back as given, NOT lowercased.
                ("Invalid URL", "Invalid URL"),
                ("quay.io/example/repo:", "quay.io/example/repo:"),
                (
                    "ghcr.io/example/repo@sha256:short",
                    "ghcr.io/example/repo@sha256:short",
                ),
                // go-containerregistry v0.21.7 rejects one-character repositories.
                ("docker.io/a", "docker.io/a"),
                ("localhost/foo", "localhost/foo"),
                ("localhost:5000/foo:bar", "localhost:5000/foo"),
                ("[::1]:5000/foo", "[::1]:5000/foo"),
                ("", ""),
            ],
        );
    }

    /// Kargo's own `TestNormalizeChart` table (`pkg/urls/helm_test.go`).
    #[test]
    fn chart_kargo_table() {
        check(
            normalize_chart_repo,
            &[
                ("", ""),
                ("repo", "repo"),
                ("  repo  ", "repo"),
                ("REpo", "repo"),
                ("oci://repo", "repo"),
                ("  oci://repo  ", "repo"),
                ("OCI://Repo", "repo"),
                ("oci://docker.io/example/repo", "example/repo"),
                ("docker.io/example/repo", "example/repo"),
                ("oci://index.docker.io/example/repo", "example/repo"),
                ("index.docker.io/example/repo", "example/repo"),
                ("oci://registry-1.docker.io/example/repo", "example/repo"),
                ("registry-1.docker.io/example/repo", "example/repo"),
            ],
        );
    }

    #[test]
    fn chart_quirks() {
        check(
            normalize_chart_repo,
            &[
                ("https://charts.example.com", "https://charts.example.com"),
                (
                    "HTTPS://Charts.Example.com/Stable/",
                    "https://charts.example.com/stable/",
                ),
                // A trailing port parses as an image tag and is dropped...
                (
                    "https://charts.example.com:8443",
                    "https://charts.example.com",
                ),
                // ...unless a path follows it.
                (
                    "https://charts.example.com:8443/",
                    "https://charts.example.com:8443/",
                ),
                (
                    "https://User:Pass@Charts.example.com",
                    "https://user:pass@charts.example.com",
                ),
                // Go's URL parser rejects these, so they come back untouched.
                ("127.0.0.1:5000/Charts/App", "127.0.0.1:5000/Charts/App"),
                ("HTTPS://localhost:80:80/X", "HTTPS://localhost:80:80/X"),
                ("localhost:5000/Charts/App", "localhost:5000/charts/app"),
                (
                    "oci://127.0.0.1:5000/charts/app",
                    "127.0.0.1:5000/charts/app",
                ),
            ],
        );
    }

    /// Kargo's `TestSanitizeURL` table (`pkg/urls/common_test.go`).
    #[test]
    fn sanitize() {
        let cases = [
            ("  https://example.com/repo  ", "https://example.com/repo"),
            (
                "\n\thttps://example.com/repo\t\n",
                "https://example.com/repo",
            ),
            (
                "\u{FEFF}https://example.com/repo",
                "https://example.com/repo",
            ),
            (
                "https://example.com/\u{200B}repo",
                "https://example.com/repo",
            ),
            (
                "https://example.com/repo\u{FEFF}",
                "https://example.com/repo",
            ),
            (
                "\u{FEFF} https://example.com/\u{200B}repo \u{FEFF}",
                "https://example.com/repo",
            ),
            (
                "\u{FEFF} \n https://example.com/\trepo \u{200B} \n ",
                "https://example.com/repo",
            ),
            ("ftp://example.com/resource", "ftp://example.com/resource"),
            ("   ", ""),
            ("https://example.com/ myrepo", "https://example.com/ myrepo"),
            ("a\u{A0}b\u{E000}c\u{2028}d", "abcd"),
        ];
        for (input, expected) in cases {
            assert_eq!(sanitize_url(input), expected, "input {input:?}");
        }
        assert_eq!(go_to_lower("İSTANBUL ΣΑΣ"), "istanbul σασ");
    }

    #[test]
    fn go_path_join_and_clean() {
        let cleans = [
            ("", "."),
            ("/", "/"),
            ("a//b/./c/..", "a/b"),
            ("/../a/", "/a"),
            ("../../a", "../../a"),
            ("a/../..", ".."),
            ("https://charts.example.com/", "https:/charts.example.com"),
        ];
        for (input, expected) in cleans {
            assert_eq!(path_clean(input), expected, "clean {input:?}");
        }
        assert_eq!(path_join("", ""), "");
        assert_eq!(path_join("a", ""), "a");
        assert_eq!(path_join("", "b"), "b");
        assert_eq!(path_join("a/", "../b"), "b");
        assert_eq!(
            path_join("https://charts.example.com:8443/", "nginx"),
            "https:/charts.example.com:8443/nginx"
        );
    }

    #[test]
    fn go_url_round_trips() {
        let cases = [
            (
                "https://user:p%40ss@host:8080/a%20b?x=1#frag%21",
                "https://user:p%40ss@host:8080/a%20b?x=1#frag%21",
            ),
            ("https://host/a b", "https://host/a%20b"),
            ("mailto:someone@example.com", "mailto:someone@example.com"),
            ("https:/just/a/path", "https:/just/a/path"),
            ("//host/p", "//host/p"),
            ("relative/path", "relative/path"),
            ("https://[fe80::1%25en0]:80/", "https://[fe80::1%25en0]:80/"),
        ];
        for (input, expected) in cases {
            let url = GoUrl::parse(input).unwrap_or_else(|| panic!("{input} should parse"));
            assert_eq!(url.to_go_string(), expected, "input {input:?}");
        }
        for bad in [
            "1a:b/c",
            ":x",
            "https://a b",
            "https://h/%zz",
            "http://a:1:2",
            "https://[::1",
            "//a%41",
        ] {
            assert!(GoUrl::parse(bad).is_none(), "{bad} should not parse");
        }
        assert!(registry_is_valid("ghcr.io"));
        assert!(registry_is_valid("localhost:5000"));
        assert!(registry_is_valid("https:"));
        assert!(!registry_is_valid("a@b.io"));
        assert!(!registry_is_valid("b.io:port"));
    }
}
