//! The function table of the expression engine.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr, Rest, Value};
use minijinja::{Environment, Error, ErrorKind, State};
use serde_json::Value as Json;

use crate::freight::{FreightCollection, FreightOrigin, normalize_git_url};
use crate::secret::SecretStore;

/// The name under which the function data hides in the scope.
pub(crate) const DATA_KEY: &str = "__kargo";

/// Which subscriptions the Warehouse behind a requested origin has; `imageFrom` and
/// friends use this to find the origin that provides a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginSubscriptions {
    /// The requested origin.
    pub origin: FreightOrigin,
    /// Image repository URLs.
    pub images: Vec<String>,
    /// Chart repository URLs with chart names (empty for OCI).
    pub charts: Vec<(String, String)>,
    /// Git repository URLs.
    pub git: Vec<String>,
    /// Names of generic subscriptions.
    pub generic: Vec<String>,
}

impl Default for OriginSubscriptions {
    fn default() -> Self {
        Self {
            origin: FreightOrigin::warehouse(""),
            images: Vec::new(),
            charts: Vec::new(),
            git: Vec::new(),
            generic: Vec::new(),
        }
    }
}

/// One step's status, as the status functions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepStatusEntry {
    /// The full alias (`task-1::commit`).
    pub alias: String,
    /// `Succeeded`, `Skipped`, `Running`, `Aborted`, `Failed`, `Errored` (or empty).
    pub status: String,
    /// Whether the step had `continueOnError`.
    pub continue_on_error: bool,
}

/// The data behind the expression functions: the Freight being promoted, the requested
/// origins, secrets, metadata, and (in step `config` and `if`) step statuses.
#[derive(Default, Clone)]
pub struct EvalData {
    /// The Freight collection of the promotion.
    pub freight: FreightCollection,
    /// The Stage's requested origins with their Warehouses' subscriptions.
    pub requested: Vec<OriginSubscriptions>,
    /// The project's secrets, for `secret(name)`.
    pub secrets: Option<Arc<dyn SecretStore>>,
    /// Freight metadata by Freight name, for `freightMetadata(name)`.
    pub freight_metadata: BTreeMap<String, serde_json::Map<String, Json>>,
    /// Stage metadata by Stage name, for `stageMetadata(name)`.
    pub stage_metadata: BTreeMap<String, serde_json::Map<String, Json>>,
    /// Freight status in Kargo's JSON shape by Freight name, for `freightStatus(name)`
    /// (see [`freight_status_json`](super::freight_status_json)).
    pub freight_status: BTreeMap<String, Json>,
    /// Step statuses; `None` where the status functions are not available (vars).
    pub steps: Option<Vec<StepStatusEntry>>,
    /// The alias of the step being evaluated (for `status()` namespaces).
    pub current_alias: String,
}

impl fmt::Debug for EvalData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvalData")
            .field("freight", &self.freight)
            .field("requested", &self.requested)
            .field("current_alias", &self.current_alias)
            .finish_non_exhaustive()
    }
}

/// An opaque handle: expressions can see the name but nothing inside.
#[derive(Debug)]
pub(crate) struct DataHandle(pub(crate) Arc<EvalData>);

impl Object for DataHandle {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        None
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<kargo>")
    }
}

pub(crate) fn data(state: &State<'_, '_>) -> Arc<EvalData> {
    state
        .lookup(DATA_KEY)
        .and_then(|v| v.downcast_object::<DataHandle>())
        .map(|h| h.0.clone())
        .unwrap_or_default()
}

fn err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// What a [`Record`] describes (used to recognise origins passed back in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordType {
    Origin,
    Image,
    Chart,
    Commit,
    Artifact,
}

/// A struct-like value readable both by its JSON field names (`tag`) and by the Go field
/// names Kargo's expressions use (`Tag`).
#[derive(Debug)]
struct Record {
    ty: RecordType,
    fields: Vec<(&'static str, &'static str, Value)>,
}

impl Object for Record {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let k = key.as_str()?;
        self.fields
            .iter()
            .find(|(json, go, _)| *json == k || *go == k)
            .map(|(_, _, v)| v.clone())
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<Value> = self
            .fields
            .iter()
            .map(|(j, _, _)| Value::from(*j))
            .collect();
        Enumerator::Values(keys)
    }
}

fn record(ty: RecordType, fields: Vec<(&'static str, &'static str, Value)>) -> Value {
    Value::from_object(Record { ty, fields })
}

fn origin_value(o: &FreightOrigin) -> Value {
    record(
        RecordType::Origin,
        vec![
            ("kind", "Kind", Value::from(o.kind.to_string())),
            ("name", "Name", Value::from(o.name.clone())),
        ],
    )
}

fn origin_arg(v: &Value, fname: &str, pos: &str) -> Result<FreightOrigin, Error> {
    if let Some(r) = v.downcast_object_ref::<Record>()
        && r.ty == RecordType::Origin
    {
        let name = r
            .fields
            .iter()
            .find(|f| f.0 == "name")
            .and_then(|f| f.2.as_str().map(str::to_owned))
            .unwrap_or_default();
        return Ok(FreightOrigin::warehouse(name));
    }
    if let (Ok(kind), Ok(name)) = (v.get_attr("kind"), v.get_attr("name"))
        && kind.as_str() == Some("Warehouse")
        && let Some(n) = name.as_str()
    {
        return Ok(FreightOrigin::warehouse(n));
    }
    Err(err(format!(
        "{fname}(): the {pos} argument must be a Freight origin such as warehouse(\"name\")"
    )))
}

fn str_arg<'a>(v: &'a Value, fname: &str, pos: &str) -> Result<&'a str, Error> {
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            format!("{fname}(): the {pos} argument is undefined"),
        ));
    }
    v.as_str().ok_or_else(|| {
        err(format!(
            "{fname}(): the {pos} argument must be a string, got {}",
            v.kind()
        ))
    })
}

fn map_value(m: &serde_json::Map<String, Json>) -> Value {
    Value::from(minijinja::value::Serde(m))
}

/// Finds the origin that provides a repository, as Kargo's Freight finder does.
fn find_origin<'a>(
    d: &'a EvalData,
    what: &str,
    matches: impl Fn(&OriginSubscriptions) -> bool,
) -> Result<Option<&'a FreightOrigin>, Error> {
    let mut found: Option<&FreightOrigin> = None;
    for req in &d.requested {
        if matches(req) {
            if found.is_some() {
                return Err(err(format!(
                    "multiple requested Freight could provide {what}: pass a Freight origin to disambiguate, e.g. warehouse(\"name\")"
                )));
            }
            found = Some(&req.origin);
        }
    }
    Ok(found)
}

/// Splits `repo[, origin]` arguments.
fn key_and_origin<'a>(
    fname: &str,
    args: &'a [Value],
) -> Result<(&'a str, Option<FreightOrigin>), Error> {
    match args {
        [k] => Ok((str_arg(k, fname, "first")?, None)),
        [k, o] => Ok((
            str_arg(k, fname, "first")?,
            Some(origin_arg(o, fname, "second")?),
        )),
        _ => Err(err(format!(
            "{fname}() takes 1 or 2 arguments, got {}",
            args.len()
        ))),
    }
}

/// Resolves the origin (given, or the single requested origin whose Warehouse subscribes)
/// and applies `pick` to that origin's Freight. `None` from resolution means nil.
fn from_freight(
    state: &State<'_, '_>,
    origin: Option<FreightOrigin>,
    what: &str,
    subscribes: impl Fn(&OriginSubscriptions) -> bool,
    pick: impl Fn(&crate::freight::FreightReference) -> Option<Value>,
) -> Result<Option<Value>, Error> {
    let d = data(state);
    let origin = match origin {
        Some(o) => o,
        None => match find_origin(&d, what, subscribes)? {
            Some(o) => o.clone(),
            None => return Ok(None),
        },
    };
    Ok(Some(
        d.freight
            .get(&origin)
            .and_then(pick)
            .unwrap_or(Value::from(())),
    ))
}

fn image_from(state: &State<'_, '_>, args: Rest<Value>) -> Result<Value, Error> {
    let (repo, origin) = key_and_origin("imageFrom", &args)?;
    let found = from_freight(
        state,
        origin,
        &format!("an image from repository {repo}"),
        |r| r.images.iter().any(|u| u == repo),
        |f| {
            f.images.iter().find(|i| i.repo_url == repo).map(|i| {
                record(
                    RecordType::Image,
                    vec![
                        ("repoURL", "RepoURL", Value::from(i.repo_url.clone())),
                        ("tag", "Tag", Value::from(i.tag.clone())),
                        ("digest", "Digest", Value::from(i.digest.clone())),
                        (
                            "annotations",
                            "Annotations",
                            Value::from(minijinja::value::Serde(&i.annotations)),
                        ),
                    ],
                )
            })
        },
    )?;
    Ok(found.unwrap_or(Value::from(())))
}

fn chart_from(state: &State<'_, '_>, args: Rest<Value>) -> Result<Value, Error> {
    let (repo, name, origin) = match args.as_slice() {
        [r] => (str_arg(r, "chartFrom", "first")?, "", None),
        [r, x] => {
            let repo = str_arg(r, "chartFrom", "first")?;
            if let Some(n) = x.as_str() {
                (repo, n, None)
            } else {
                (repo, "", Some(origin_arg(x, "chartFrom", "second")?))
            }
        }
        [r, n, o] => (
            str_arg(r, "chartFrom", "first")?,
            str_arg(n, "chartFrom", "second")?,
            Some(origin_arg(o, "chartFrom", "third")?),
        ),
        _ => {
            return Err(err(format!(
                "chartFrom() takes 1 to 3 arguments, got {}",
                args.len()
            )));
        }
    };
    let found = from_freight(
        state,
        origin,
        &format!("a chart from repository {repo}"),
        |r| r.charts.iter().any(|(u, n)| u == repo && n == name),
        |f| {
            f.charts
                .iter()
                .find(|c| c.repo_url == repo && c.name == name)
                .map(|c| {
                    record(
                        RecordType::Chart,
                        vec![
                            ("repoURL", "RepoURL", Value::from(c.repo_url.clone())),
                            ("name", "Name", Value::from(c.name.clone())),
                            ("version", "Version", Value::from(c.version.clone())),
                        ],
                    )
                })
        },
    )?;
    // Unlike images and commits, Kargo reports a chart nobody subscribes to as an error.
    found.ok_or_else(|| {
        err(if name.is_empty() {
            format!("chart from repository {repo} not found in the requested Freight")
        } else {
            format!("chart {name:?} from repository {repo} not found in the requested Freight")
        })
    })
}

fn commit_from(state: &State<'_, '_>, args: Rest<Value>) -> Result<Value, Error> {
    let (repo, origin) = key_and_origin("commitFrom", &args)?;
    let want = normalize_git_url(repo);
    let found = from_freight(
        state,
        origin,
        &format!("a commit from repository {repo}"),
        |r| r.git.iter().any(|u| normalize_git_url(u) == want),
        |f| {
            f.commits
                .iter()
                .find(|c| normalize_git_url(&c.repo_url) == want)
                .map(|c| {
                    record(
                        RecordType::Commit,
                        vec![
                            ("repoURL", "RepoURL", Value::from(c.repo_url.clone())),
                            ("id", "ID", Value::from(c.id.clone())),
                            ("branch", "Branch", Value::from(c.branch.clone())),
                            ("tag", "Tag", Value::from(c.tag.clone())),
                            ("message", "Message", Value::from(c.message.clone())),
                            ("author", "Author", Value::from(c.author.clone())),
                            ("committer", "Committer", Value::from(c.committer.clone())),
                        ],
                    )
                })
        },
    )?;
    Ok(found.unwrap_or(Value::from(())))
}

fn artifact_from(state: &State<'_, '_>, args: Rest<Value>) -> Result<Value, Error> {
    let (sub, origin) = key_and_origin("artifactFrom", &args)?;
    let found = from_freight(
        state,
        origin,
        &format!("a {sub:?} artifact"),
        |r| r.generic.iter().any(|n| n == sub),
        |f| {
            f.artifacts
                .iter()
                .find(|a| a.subscription_name == sub)
                .map(|a| {
                    record(
                        RecordType::Artifact,
                        vec![
                            (
                                "artifactType",
                                "ArtifactType",
                                Value::from(a.artifact_type.clone()),
                            ),
                            (
                                "subscriptionName",
                                "SubscriptionName",
                                Value::from(a.subscription_name.clone()),
                            ),
                            ("version", "Version", Value::from(a.version.clone())),
                            (
                                "metadata",
                                "Metadata",
                                Value::from(minijinja::value::Serde(&a.metadata)),
                            ),
                        ],
                    )
                })
        },
    )?;
    Ok(found.unwrap_or(Value::from(())))
}

/// Go's `strconv.Quote` (`%q`): a double-quoted string with Go escapes. Printable characters
/// (by an approximation of Go's `unicode.IsPrint`) are kept as they are.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint`: letters, marks, numbers, punctuation,
/// symbols and the ASCII space. Control, format, private-use and non-ASCII space
/// characters are not printable.
fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let format_or_private = matches!(u,
        0x00ad | 0x0600..=0x0605 | 0x061c | 0x06dd | 0x070f | 0x0890..=0x0891 | 0x08e2
        | 0x180e | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f
        | 0xe000..=0xf8ff | 0xfeff | 0xfff9..=0xfffb | 0xfffe..=0xffff
        | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a
        | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..);
    !format_or_private && (u & 0xfffe) != 0xfffe
}

fn json_of(v: &Value, fname: &str) -> Result<Json, Error> {
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            format!("{fname}(): the argument is undefined"),
        ));
    }
    super::to_json(v).map_err(|e| err(format!("{fname}(): {e}")))
}

/// Like [`json_of`], with an undefined value (a missing key) as `null`, as expr-lang's nil.
fn json_or_null(v: &Value, fname: &str) -> Result<Json, Error> {
    if v.is_undefined() {
        return Ok(Json::Null);
    }
    json_of(v, fname)
}

/// A parsed semantic version, with the methods Kargo's expressions call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SemVer {
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
    meta: String,
    original: String,
}

impl SemVer {
    /// Parses leniently, as Masterminds' `NewVersion`: optional `v`, `1` and `1.2`
    /// accepted, pre-release and build metadata.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let body = s.strip_prefix('v').unwrap_or(s);
        let (body, meta) = match body.split_once('+') {
            Some((b, m)) => (b, m),
            None => (body, ""),
        };
        let (core, pre) = match body.split_once('-') {
            Some((c, p)) => (c, p),
            None => (body, ""),
        };
        let ident_ok = |x: &str| {
            x.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
        };
        if (!pre.is_empty() && !ident_ok(pre))
            || (!meta.is_empty() && !ident_ok(meta))
            || (s.contains('+') && meta.is_empty())
            || (body.contains('-') && pre.is_empty())
        {
            return None;
        }
        let nums: Vec<&str> = core.split('.').collect();
        if nums.is_empty() || nums.len() > 3 {
            return None;
        }
        let mut parsed = [0u64; 3];
        for (i, n) in nums.iter().enumerate() {
            if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            parsed[i] = n.parse().ok()?;
        }
        Some(Self {
            major: parsed[0],
            minor: parsed[1],
            patch: parsed[2],
            pre: pre.to_owned(),
            meta: meta.to_owned(),
            original: s.to_owned(),
        })
    }
}

impl fmt::Display for SemVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        if !self.meta.is_empty() {
            write!(f, "+{}", self.meta)?;
        }
        Ok(())
    }
}

impl Object for SemVer {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_ref(), f)
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "major" => Value::from(self.major),
            "minor" => Value::from(self.minor),
            "patch" => Value::from(self.patch),
            "prerelease" => Value::from(self.pre.clone()),
            "metadata" => Value::from(self.meta.clone()),
            "original" => Value::from(self.original.clone()),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if !args.is_empty() {
            return Err(err(format!("{method}() takes no arguments")));
        }
        let bumped = |major, minor, patch| {
            Value::from_object(SemVer {
                major,
                minor,
                patch,
                pre: String::new(),
                meta: String::new(),
                original: String::new(),
            })
        };
        Ok(match method {
            "Major" => Value::from(self.major),
            "Minor" => Value::from(self.minor),
            "Patch" => Value::from(self.patch),
            "Prerelease" => Value::from(self.pre.clone()),
            "Metadata" => Value::from(self.meta.clone()),
            "Original" => Value::from(self.original.clone()),
            "String" => Value::from(self.to_string()),
            "IncMajor" => bumped(self.major + 1, 0, 0),
            "IncMinor" => bumped(self.major, self.minor + 1, 0),
            // Masterminds: a pre-release version's patch bump only drops the pre-release.
            "IncPatch" if !self.pre.is_empty() => bumped(self.major, self.minor, self.patch),
            "IncPatch" => bumped(self.major, self.minor, self.patch + 1),
            _ => {
                return Err(Error::new(
                    ErrorKind::UnknownMethod,
                    format!("semantic versions have no method {method}()"),
                ));
            }
        })
    }
}

fn regex_cache() -> &'static Mutex<HashMap<String, regex::Regex>> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<String, regex::Regex>>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn regex_matches(s: &str, re: &str) -> Result<bool, Error> {
    if let Ok(cache) = regex_cache().lock()
        && let Some(r) = cache.get(re)
    {
        return Ok(r.is_match(s));
    }
    let compiled = regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| err(format!("invalid regular expression {re:?}: {e}")))?;
    let m = compiled.is_match(s);
    if let Ok(mut cache) = regex_cache().lock() {
        if cache.len() > 512 {
            cache.clear();
        }
        cache.insert(re.to_owned(), compiled);
    }
    Ok(m)
}

fn two_strs<'a>(fname: &str, a: &'a Value, b: &'a Value) -> Result<(&'a str, &'a str), Error> {
    Ok((str_arg(a, fname, "first")?, str_arg(b, fname, "second")?))
}

/// Registers every function in `env`.
pub(crate) fn register(env: &mut Environment<'static>) {
    // Kargo quotes nil (a `null`, a missing key) as the string `null`.
    env.add_function("quote", |v: Value| -> Result<String, Error> {
        if let Some(s) = v.as_str() {
            return Ok(go_quote(s));
        }
        Ok(format!("\"{}\"", json_or_null(&v, "quote")?))
    });
    env.add_function("unsafeQuote", |v: Value| -> Result<String, Error> {
        Ok(format!("\"{}\"", json_or_null(&v, "unsafeQuote")?))
    });
    env.add_function("asJSON", |v: Value| -> Result<String, Error> {
        let j = json_of(&v, "asJSON")?;
        let pretty = serde_json::to_string_pretty(&j).map_err(|e| err(e.to_string()))?;
        Ok(format!("\"{pretty}\n\""))
    });
    env.add_function("asYAML", |v: Value| -> Result<String, Error> {
        let j = json_of(&v, "asYAML")?;
        let y = yaml_serde::to_string(&j).map_err(|e| err(e.to_string()))?;
        Ok(format!("\"{y}\""))
    });
    env.add_function("warehouse", |name: Value| -> Result<Value, Error> {
        let n = str_arg(&name, "warehouse", "first")?;
        if n.is_empty() {
            return Err(err("warehouse(): the name must not be empty"));
        }
        Ok(origin_value(&FreightOrigin::warehouse(n)))
    });
    env.add_function("imageFrom", image_from);
    env.add_function("chartFrom", chart_from);
    env.add_function("commitFrom", commit_from);
    env.add_function("artifactFrom", artifact_from);
    env.add_function(
        "secret",
        |state: &State<'_, '_>, name: Value| -> Result<Value, Error> {
            let n = str_arg(&name, "secret", "first")?;
            let d = data(state);
            let map: BTreeMap<String, String> = d
                .secrets
                .as_ref()
                .and_then(|s| s.secret(n))
                .map(|m| {
                    m.into_iter()
                        .map(|(k, v)| (k, v.expose().clone()))
                        .collect()
                })
                .unwrap_or_default();
            Ok(Value::from(map))
        },
    );
    env.add_function(
        "freightMetadata",
        |state: &State<'_, '_>, name: Value| -> Result<Value, Error> {
            let n = str_arg(&name, "freightMetadata", "first")?;
            if n.is_empty() {
                return Err(err("freightMetadata(): the Freight name must not be empty"));
            }
            Ok(data(state)
                .freight_metadata
                .get(n)
                .map(map_value)
                .unwrap_or(Value::from(())))
        },
    );
    env.add_function("freightStatus", super::freight_status::freight_status);
    env.add_function(
        "stageMetadata",
        |state: &State<'_, '_>, name: Value| -> Result<Value, Error> {
            let n = str_arg(&name, "stageMetadata", "first")?;
            if n.is_empty() {
                return Err(err("stageMetadata(): the Stage name must not be empty"));
            }
            Ok(data(state)
                .stage_metadata
                .get(n)
                .map(map_value)
                .unwrap_or(Value::from(())))
        },
    );
    env.add_function("semverParse", |v: Value| -> Result<Value, Error> {
        let s = str_arg(&v, "semverParse", "first")?;
        SemVer::parse(s)
            .map(Value::from_object)
            .ok_or_else(|| err(format!("semverParse(): {s:?} is not a semantic version")))
    });
    env.add_function(
        "semverDiff",
        |a: Value, b: Value| -> Result<String, Error> {
            let (a, b) = two_strs("semverDiff", &a, &b)?;
            let (Some(x), Some(y)) = (SemVer::parse(a), SemVer::parse(b)) else {
                return Ok("Incomparable".to_owned());
            };
            Ok(if x.major != y.major {
                "Major"
            } else if x.minor != y.minor {
                "Minor"
            } else if x.patch != y.patch {
                "Patch"
            } else if x.meta != y.meta {
                "Metadata"
            } else {
                "None"
            }
            .to_owned())
        },
    );
    env.add_function("always", |state: &State<'_, '_>| -> Result<bool, Error> {
        statuses(state, "always").map(|_| true)
    });
    env.add_function("failure", |state: &State<'_, '_>| -> Result<bool, Error> {
        statuses(state, "failure").map(|s| has_failure(&s))
    });
    env.add_function("success", |state: &State<'_, '_>| -> Result<bool, Error> {
        statuses(state, "success").map(|s| !has_failure(&s))
    });
    env.add_function(
        "status",
        |state: &State<'_, '_>, alias: Value| -> Result<String, Error> {
            let alias = str_arg(&alias, "status", "first")?;
            if alias.is_empty() {
                return Err(err("status(): the alias must not be empty"));
            }
            let d = data(state);
            let Some(steps) = d.steps.as_ref() else {
                return Err(err(
                    "status() is only available in a step's `config` and `if`",
                ));
            };
            let ns = namespace(&d.current_alias);
            for s in steps {
                let (sns, short) = match s.alias.split_once("::") {
                    Some((n, a)) => (n, a),
                    None => ("", s.alias.as_str()),
                };
                if sns == ns && short == alias {
                    return Ok(s.status.clone());
                }
            }
            Ok(String::new())
        },
    );

    // Helpers the expr-lang translation relies on.
    env.add_function(
        "__optget",
        |obj: Value, key: Value| -> Result<Value, Error> {
            if obj.is_undefined() || obj.is_none() {
                return Ok(Value::from(()));
            }
            let v = match key.as_str() {
                Some(k) => obj.get_attr(k).or_else(|_| obj.get_item(&key))?,
                None => obj.get_item(&key)?,
            };
            Ok(if v.is_undefined() { Value::from(()) } else { v })
        },
    );
    env.add_function("__isnil", |v: Value| -> bool {
        v.is_undefined() || v.is_none()
    });
    env.add_function("__coalesce", |a: Value, b: Value| -> Value {
        if a.is_undefined() || a.is_none() {
            b
        } else {
            a
        }
    });
    env.add_function("__matches", |s: Value, re: Value| -> Result<bool, Error> {
        let (s, re) = two_strs("matches", &s, &re)?;
        regex_matches(s, re)
    });
    env.add_function("__contains", |a: Value, b: Value| -> Result<bool, Error> {
        if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
            return Ok(x.contains(y));
        }
        Err(err("contains: both operands must be strings"))
    });
    env.add_function(
        "__startsWith",
        |a: Value, b: Value| -> Result<bool, Error> {
            let (a, b) = two_strs("startsWith", &a, &b)?;
            Ok(a.starts_with(b))
        },
    );
    env.add_function("__endsWith", |a: Value, b: Value| -> Result<bool, Error> {
        let (a, b) = two_strs("endsWith", &a, &b)?;
        Ok(a.ends_with(b))
    });
    env.add_function(
        "__trimPrefix",
        |a: Value, b: Value| -> Result<String, Error> {
            let (a, b) = two_strs("trimPrefix", &a, &b)?;
            Ok(a.strip_prefix(b).unwrap_or(a).to_owned())
        },
    );
    env.add_function(
        "__trimSuffix",
        |a: Value, b: Value| -> Result<String, Error> {
            let (a, b) = two_strs("trimSuffix", &a, &b)?;
            Ok(a.strip_suffix(b).unwrap_or(a).to_owned())
        },
    );
    env.add_function("__add", |a: Value, b: Value| -> Result<Value, Error> {
        if a.is_undefined() || b.is_undefined() {
            return Err(Error::new(
                ErrorKind::UndefinedError,
                "`+` on an undefined value",
            ));
        }
        match (a.as_str(), b.as_str()) {
            (Some(x), Some(y)) => Ok(Value::from(format!("{x}{y}"))),
            (Some(_), None) | (None, Some(_)) => Err(err(format!(
                "`+` cannot add a {} and a {}",
                a.kind(),
                b.kind()
            ))),
            (None, None) => {
                if let (Ok(x), Ok(y)) = (i64::try_from(a.clone()), i64::try_from(b.clone()))
                    && let Some(sum) = x.checked_add(y)
                {
                    return Ok(Value::from(sum));
                }
                match (f64::try_from(a.clone()), f64::try_from(b.clone())) {
                    (Ok(x), Ok(y)) => Ok(Value::from(x + y)),
                    _ => Err(err(format!(
                        "`+` cannot add a {} and a {}",
                        a.kind(),
                        b.kind()
                    ))),
                }
            }
        }
    });
}

fn statuses(state: &State<'_, '_>, fname: &str) -> Result<Vec<StepStatusEntry>, Error> {
    data(state).steps.clone().ok_or_else(|| {
        err(format!(
            "{fname}() is only available in a step's `config` and `if`"
        ))
    })
}

fn has_failure(steps: &[StepStatusEntry]) -> bool {
    steps
        .iter()
        .any(|s| !s.continue_on_error && (s.status == "Failed" || s.status == "Errored"))
}

fn namespace(alias: &str) -> &str {
    alias.split_once("::").map(|(n, _)| n).unwrap_or("")
}
