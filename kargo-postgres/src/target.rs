//! How errors and logs name the database: `postgres://user@host:port/dbname`, never
//! with its password, and the driver's errors put in words.

use tokio_postgres::config::Host;

/// `config`'s database without its password.
pub(crate) fn describe(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("");
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(h, p)| match h {
            Host::Tcp(name) => format!("{name}:{p}"),
            #[cfg(unix)]
            Host::Unix(path) => format!("{}:{p}", path.display()),
        })
        .collect();
    let db = config.get_dbname().unwrap_or(user);
    let at = if user.is_empty() { "" } else { "@" };
    format!("postgres://{user}{at}{}/{db}", hosts.join(","))
}

/// A connection string that did not parse, named without anything that could be a
/// password: its scheme and host part only.
pub(crate) fn describe_unparsed(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "a PostgreSQL connection string".to_owned();
    };
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split(['/', '?']).next().unwrap_or("");
    format!("{scheme}://{host}")
}

/// A pool error in words: the driver's error for a failed connection.
pub(crate) fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(e),
        other => other.to_string(),
    }
}

/// A driver error with its cause (the server's message, or the socket's).
pub(crate) fn db_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A migration error in words.
pub(crate) fn schema_error(e: &crate::SchemaError) -> String {
    match e {
        crate::SchemaError::Db(e) => db_error(e),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let c: tokio_postgres::Config = "postgres://kargo:s3cret@db.example:6543/state"
            .parse()
            .unwrap();
        assert_eq!(describe(&c), "postgres://kargo@db.example:6543/state");
        let bad = describe_unparsed("postgres://kargo:s3cret@db.example:notaport/state");
        assert_eq!(bad, "postgres://db.example:notaport");
        assert!(!bad.contains("s3cret"));
    }
}
