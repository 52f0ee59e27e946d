//! SMTP channels, with lettre: implicit TLS on port 465 and STARTTLS (required) on other
//! ports when `useTLS` (the default), plain SMTP otherwise; `username` / `password` from
//! the Secret, when it has them.

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message as Mail};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value as Json;

use super::deliver::{Deliverer, DeliveryError};
use super::routes::{Delivery, Message};
use super::text::{default_subject, default_text};

/// What a mail is made of.
struct Parts {
    subject: String,
    body: String,
    to: Vec<String>,
    html: bool,
}

fn parts(d: &Delivery, default_to: &[String]) -> Parts {
    let subject = default_subject(d.event_type, &d.payload);
    let mut p = Parts {
        subject,
        body: String::new(),
        to: default_to.to_vec(),
        html: false,
    };
    match &d.message {
        Message::Default => p.body = default_text(d.event_type, &d.payload),
        Message::Text(t) | Message::Xml(t) => p.body = t.clone(),
        Message::Structured(v) => {
            if let Some(s) = v.get("subject").and_then(Json::as_str) {
                p.subject = s.to_owned();
            }
            p.body = match v.get("body") {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Null) | None => default_text(d.event_type, &d.payload),
                Some(other) => other.to_string(),
            };
            match v.get("to") {
                Some(Json::String(s)) => p.to = vec![s.clone()],
                Some(Json::Array(a)) => {
                    p.to = a
                        .iter()
                        .filter_map(Json::as_str)
                        .map(str::to_owned)
                        .collect();
                }
                _ => {}
            }
            p.html = v.get("html").and_then(Json::as_bool).unwrap_or(false);
        }
    }
    p
}

fn mailbox(addr: &str, field: &str) -> Result<Mailbox, DeliveryError> {
    addr.parse::<Mailbox>()
        .map_err(|e| DeliveryError::permanent(format!("{field} {addr:?}: {e}")))
}

pub(super) async fn send(dl: &Deliverer, d: &Delivery) -> Result<(), DeliveryError> {
    let Some(smtp) = &d.channel.spec.smtp else {
        return Err(DeliveryError::permanent("not an SMTP channel"));
    };
    let secret = dl.secret(d)?;
    let p = parts(d, &smtp.to);
    let Some((first, rest)) = p.to.split_first() else {
        return Err(DeliveryError::permanent(
            "no recipient: set spec.smtp.to or `to` in the output",
        ));
    };
    let mut builder = Mail::builder()
        .from(mailbox(&smtp.from, "from")?)
        .to(mailbox(first, "to")?)
        .subject(p.subject)
        .header(if p.html {
            ContentType::TEXT_HTML
        } else {
            ContentType::TEXT_PLAIN
        });
    for cc in rest {
        builder = builder.cc(mailbox(cc, "to")?);
    }
    let mail = builder
        .body(p.body)
        .map_err(|e| DeliveryError::permanent(format!("cannot build the mail: {e}")))?;

    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
        .port(smtp.port)
        .timeout(Some(dl.options.smtp_timeout));
    if smtp.use_tls {
        let params = TlsParameters::builder(smtp.host.clone())
            .dangerous_accept_invalid_certs(smtp.insecure_skip_verify)
            .build_rustls()
            .map_err(|e| DeliveryError::permanent(format!("TLS settings: {e}")))?;
        transport = transport.tls(if smtp.port == 465 {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        });
    }
    if let Some(s) = &secret
        && let Some(user) = s.get("username")
    {
        let password = s
            .get("password")
            .map(|p| p.expose().clone())
            .unwrap_or_default();
        transport = transport.credentials(Credentials::new(user.expose().clone(), password));
    }
    let transport = transport.build();
    match transport.send(mail).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => Err(DeliveryError::permanent(format!("SMTP: {e}"))),
        Err(e) => Err(DeliveryError::transient(format!("SMTP: {e}"))),
    }
}
