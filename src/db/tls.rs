//! TLS to PostgreSQL: libpq's `sslmode`s on rustls, with the ring provider
//! that reqwest already uses.
//!
//! | mode | TLS | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` (default) | if the server offers it, else clear text | chain, if a CA is given |
//! | `require` | always | chain, if a CA is given (libpq's rule); else nothing |
//! | `verify-ca` | always | chain against the CA, not the host name |
//! | `verify-full` | always | chain and host name |
//!
//! TLS is never attempted over a Unix socket (PostgreSQL offers none there;
//! libpq ignores `sslmode` for sockets too). The rustls configuration is
//! built once per [`Tls`]; each new connection only clones an `Arc`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, less `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported: use prefer (TLS when offered) or disable"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres itself is told: whether to ask for TLS, and
    /// whether a server without it is refused.
    pub(crate) fn for_tokio_postgres(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self {
            Self::Disable => Pg::Disable,
            Self::Prefer => Pg::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => Pg::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// A PEM file of one or more certificates (`database.ca_file`,
    /// `sslrootcert=`).
    File(PathBuf),
    /// `sslrootcert=system`: the Mozilla roots bundled with webpki-roots.
    System,
}

impl CaSource {
    pub fn from_setting(value: &str) -> Self {
        if value == "system" {
            Self::System
        } else {
            Self::File(PathBuf::from(value))
        }
    }
}

impl fmt::Display for CaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::System => f.write_str("the bundled system roots"),
        }
    }
}

/// How connections are secured: the mode, the CA and the rustls connector
/// built from them.
#[derive(Clone)]
pub struct Tls {
    mode: SslMode,
    ca: Option<CaSource>,
    connector: MakeRustlsConnect,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("mode", &self.mode)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the CA (if any) and builds the rustls configuration; the
    /// error says what is wrong in an operator's words.
    pub fn new(mode: SslMode, ca: Option<CaSource>) -> Result<Self, String> {
        if ca == Some(CaSource::System) && mode != SslMode::VerifyFull {
            return Err(format!(
                "sslrootcert=system needs sslmode=verify-full (not {mode}): a public CA vouches only for host names"
            ));
        }
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && ca.is_none() {
            return Err(format!(
                "sslmode={mode} needs the CA that signed the server's certificate: set database.ca_file or sslrootcert="
            ));
        }
        let roots = match &ca {
            None => None,
            Some(CaSource::System) => Some(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
            Some(CaSource::File(path)) => Some(read_roots(path)?),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = match roots {
            Some(roots) => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("the CA certificates cannot be used: {e}"))?,
            ),
            None => None,
        };
        let verifier = Verifier {
            algorithms: provider.signature_verification_algorithms,
            chain,
            check_host_name: mode == SslMode::VerifyFull,
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Self {
            mode,
            ca,
            connector: MakeRustlsConnect::new(config),
        })
    }

    /// No CA: `prefer` and `require` encrypt without checking who answers.
    pub fn unverified(mode: SslMode) -> Self {
        Self::new(mode.min(SslMode::Require), None)
            .expect("a TLS set-up without a CA reads no file and cannot fail")
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    pub fn ca(&self) -> Option<&CaSource> {
        self.ca.as_ref()
    }

    /// Is the server's certificate chain checked (when TLS is used)?
    pub fn verifies_certificate(&self) -> bool {
        self.mode != SslMode::Disable && self.ca.is_some()
    }

    pub(crate) fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }
}

fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "the CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(certs);
    if ignored > 0 {
        return Err(format!(
            "the CA file {}: {ignored} certificate(s) cannot be parsed",
            path.display()
        ));
    }
    Ok(roots)
}

/// Checks the server's certificate as the mode says: the chain against the
/// CA when there is one, the host name only for `verify-full`. Handshake
/// signatures are always checked (the server holds the certificate's key).
#[derive(Debug)]
struct Verifier {
    algorithms: WebPkiSupportedAlgorithms,
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_host_name: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // webpki checks the chain first and the name last, so a name error
        // means the chain is good.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_host_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A connection string with `sslmode` and `sslrootcert` taken out (the
/// five modes and the CA are keyward's to apply; tokio-postgres knows only
/// three modes and no CA), in the form it came in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split {
    pub rest: String,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://…?sslmode=…`)
/// or a `key=value` string, following tokio-postgres's own parsers. A string
/// they could not parse is handed on whole, for tokio-postgres to report.
pub(crate) fn split_tls_params(s: &str) -> Split {
    split_url(s)
        .or_else(|| split_key_values(s))
        .unwrap_or(Split {
            rest: s.to_owned(),
            sslmode: None,
            sslrootcert: None,
        })
}

fn split_url(s: &str) -> Option<Split> {
    let after_scheme = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|p| s.strip_prefix(p))?;
    let mut split = Split {
        rest: s.to_owned(),
        sslmode: None,
        sslrootcert: None,
    };
    // As tokio-postgres: credentials run to the first `@`, the query starts
    // at the first `?` after them.
    let creds_end = after_scheme.find('@').map_or(0, |i| i + 1);
    let Some(q) = after_scheme[creds_end..].find('?') else {
        return Some(split);
    };
    let q = s.len() - after_scheme.len() + creds_end + q;
    let mut kept = Vec::new();
    let mut rest = &s[q + 1..];
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else {
            // Unterminated: tokio-postgres says so.
            kept.push(rest);
            break;
        };
        let (value, next) = match rest[eq + 1..].find('&') {
            Some(amp) => (&rest[eq + 1..eq + 1 + amp], &rest[eq + 2 + amp..]),
            None => (&rest[eq + 1..], ""),
        };
        let decode = |t: &str| {
            percent_encoding::percent_decode_str(t)
                .decode_utf8_lossy()
                .into_owned()
        };
        match decode(&rest[..eq]).as_str() {
            "sslmode" => split.sslmode = Some(decode(value)),
            "sslrootcert" => split.sslrootcert = Some(decode(value)),
            _ => kept.push(&rest[..eq + 1 + value.len()]),
        }
        rest = next;
    }
    split.rest = s[..q].to_owned();
    if !kept.is_empty() {
        split.rest.push('?');
        split.rest.push_str(&kept.join("&"));
    }
    Some(split)
}

fn split_key_values(s: &str) -> Option<Split> {
    let mut split = Split {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let byte = |i: usize| chars.get(i).map_or(s.len(), |&(b, _)| b);
    let mut kept_from = 0; // byte offset of the text not yet copied
    let mut i = 0;
    loop {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let start = i;
        while at(i).is_some_and(|c| !c.is_whitespace() && c != '=') {
            i += 1;
        }
        if i == start {
            break;
        }
        let key = &s[byte(start)..byte(i)];
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i) != Some('=') {
            return None;
        }
        i += 1;
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let mut value = String::new();
        if at(i) == Some('\'') {
            i += 1;
            loop {
                match at(i)? {
                    '\'' => break,
                    '\\' => {
                        value.push(at(i + 1)?);
                        i += 2;
                    }
                    c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            i += 1;
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(c2) = at(i + 1) {
                        value.push(c2);
                    }
                    i += 2;
                } else {
                    value.push(c);
                    i += 1;
                }
            }
            if value.is_empty() {
                return None;
            }
        }
        let slot = match key {
            "sslmode" => &mut split.sslmode,
            "sslrootcert" => &mut split.sslrootcert,
            _ => continue,
        };
        *slot = Some(value);
        split.rest.push_str(&s[kept_from..byte(start)]);
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        kept_from = byte(i).min(s.len());
    }
    split.rest.push_str(&s[kept_from..]);
    Some(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (String, Option<String>, Option<String>) {
        let Split {
            rest,
            sslmode,
            sslrootcert,
        } = split_tls_params(s);
        (rest, sslmode, sslrootcert)
    }

    #[test]
    fn url_parameters_are_taken_out_and_the_rest_kept() {
        assert_eq!(
            split("postgres://u:p@db.example.com:5432/keyward?sslmode=verify-full&application_name=kw&sslrootcert=%2Fetc%2Fca.pem"),
            (
                "postgres://u:p@db.example.com:5432/keyward?application_name=kw".into(),
                Some("verify-full".into()),
                Some("/etc/ca.pem".into())
            )
        );
        assert_eq!(
            split("postgresql://db/keyward?sslmode=require"),
            (
                "postgresql://db/keyward".into(),
                Some("require".into()),
                None
            )
        );
        assert_eq!(
            split("postgres://u@db/keyward"),
            ("postgres://u@db/keyward".into(), None, None)
        );
        // A `?` in the password is not the query.
        assert_eq!(
            split("postgres://u:p?x@db/k?sslmode=disable"),
            ("postgres://u:p?x@db/k".into(), Some("disable".into()), None)
        );
    }

    #[test]
    fn key_value_parameters_are_taken_out_and_the_rest_kept() {
        assert_eq!(
            split("host=db.example.com sslmode=verify-ca user=kw sslrootcert='/etc/my ca.pem' dbname=keyward"),
            (
                "host=db.example.com user=kw dbname=keyward".into(),
                Some("verify-ca".into()),
                Some("/etc/my ca.pem".into())
            )
        );
        assert_eq!(
            split("host=/run/postgresql sslmode = prefer"),
            ("host=/run/postgresql ".into(), Some("prefer".into()), None)
        );
        assert_eq!(
            split("password='it''s' sslmode=require"),
            ("password='it''s' sslmode=require".into(), None, None),
            "what tokio-postgres cannot parse is left to it"
        );
    }

    #[test]
    fn every_libpq_mode_but_allow_is_known() {
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(SslMode::parse(mode).unwrap().as_str(), mode);
        }
        assert!(SslMode::parse("allow")
            .unwrap_err()
            .contains("not supported"));
        assert!(SslMode::parse("verify_full").is_err());
    }

    #[test]
    fn verifying_modes_need_a_ca_and_a_readable_one() {
        let err = Tls::new(SslMode::VerifyFull, None).unwrap_err();
        assert!(err.contains("database.ca_file"), "{err}");
        let err = Tls::new(
            SslMode::VerifyCa,
            Some(CaSource::File("/nonexistent/ca.pem".into())),
        )
        .unwrap_err();
        assert!(
            err.contains("cannot read the CA file /nonexistent/ca.pem"),
            "{err}"
        );
        let err = Tls::new(SslMode::Require, Some(CaSource::System)).unwrap_err();
        assert!(err.contains("verify-full"), "{err}");
        assert!(Tls::new(SslMode::VerifyFull, Some(CaSource::System))
            .unwrap()
            .verifies_certificate());
        assert!(!Tls::unverified(SslMode::Require).verifies_certificate());
    }

    #[test]
    fn a_target_applies_the_mode_and_never_tls_over_a_socket() {
        use crate::db::Target;
        use tokio_postgres::config::SslMode as Pg;
        let t = Target::parse("postgres://kw@db.example.com/keyward", None).unwrap();
        assert_eq!(t.tls.mode(), SslMode::Prefer, "libpq's default");
        assert_eq!(t.pg.get_ssl_mode(), Pg::Prefer);
        assert!(t.security_warning().unwrap().contains("clear text"));
        let t = Target::parse("host=db.example.com sslmode=require", None).unwrap();
        assert_eq!(t.pg.get_ssl_mode(), Pg::Require);
        assert!(t.security_warning().unwrap().contains("not checked"));
        // Sockets only: no SSLRequest at all, whatever the mode.
        for s in [
            "host=/run/postgresql user=kw",
            "host=/run/postgresql sslmode=require",
        ] {
            let t = Target::parse(s, None).unwrap();
            assert_eq!(t.pg.get_ssl_mode(), Pg::Disable, "{s}");
            assert_eq!(t.security_warning(), None, "{s}");
        }
        let err = Target::parse("host=/run/postgresql,db.example.com sslmode=require", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Unix-socket"), "{err}");
        let t = Target::parse("postgres://kw@localhost/k?sslmode=disable", None).unwrap();
        assert_eq!(t.pg.get_ssl_mode(), Pg::Disable);
        assert_eq!(
            t.security_warning(),
            None,
            "loopback in clear text is no news"
        );
        let t = Target::parse("hostaddr=192.0.2.7 user=kw", None).unwrap();
        assert_eq!(
            t.pg.get_hosts(),
            [tokio_postgres::config::Host::Tcp("192.0.2.7".into())],
            "an address alone names the host for the TLS handshake"
        );
        let t = Target::parse("postgres://kw@db.example.com/k?sslrootcert=system", None).unwrap();
        assert_eq!(
            t.tls.mode(),
            SslMode::VerifyFull,
            "libpq's default with system roots"
        );
        assert_eq!(t.security_warning(), None);
    }

    #[test]
    fn the_ca_comes_from_the_url_or_the_config_not_two_places() {
        use crate::db::Target;
        let err = Target::parse(
            "host=db.example.com sslmode=verify-full sslrootcert=/a.pem",
            Some(Path::new("/b.pem")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("keep one"), "{err}");
        let err = Target::parse(
            "host=db.example.com sslmode=verify-full",
            Some(Path::new("/nonexistent/ca.pem")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let err = Target::parse("host=db.example.com sslmode=verify-full", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.ca_file"), "{err}");
        let err = Target::parse("host=db.example.com sslcert=/c.pem", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sslcert"), "{err}");
    }
}
