//! Configuration: an optional `keyward.toml` plus environment overrides,
//! parsed once at start-up into typed settings and validated as a whole, so a
//! bad configuration stops start-up with one line per problem.
//!
//! Env overrides use the `KEYWARD_` prefix and `__` between levels:
//! `KEYWARD_LISTEN`, `KEYWARD_SERVICE__PUBLIC_URL`,
//! `KEYWARD_GATEWAYS__TWILIO__AUTH_TOKEN`. `DATABASE_URL` sets the database.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = ".keyward";
/// The outbox's limit on a reply's length (the `sms_text` domain,
/// sql/V5__domains.sql).
pub const MAX_REPLY_CHARS: usize = 1600;

/// Problems found in a configuration; `Display` gives one line each.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

/// A value that must not appear in logs or `Debug` output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One secret or several (old and new, while rotating).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Secrets {
    One(Secret),
    Many(Vec<Secret>),
}

impl Secrets {
    pub fn all(&self) -> &[Secret] {
        match self {
            Secrets::One(s) => std::slice::from_ref(s),
            Secrets::Many(v) => v,
        }
    }

    /// The secret to sign or authenticate with: the first listed (the
    /// others are only accepted, while rotating).
    pub fn current(&self) -> &str {
        self.all().first().map_or("", Secret::expose)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on (`KEYWARD_LISTEN`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the embedded database and other state live (`KEYWARD_DATA_DIR`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Path of this file (`KEYWARD_CONFIG`); informational.
    #[serde(default)]
    pub config: Option<PathBuf>,
    #[serde(default)]
    pub service: ServiceSettings,
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub shortcodes: Vec<ShortcodeSettings>,
    #[serde(default)]
    pub programs: Vec<ProgramSettings>,
    #[serde(default)]
    pub gateways: GatewaySettings,
    #[serde(default)]
    pub dispatch: DispatchSettings,
}

/// The reply dispatcher (`serve` runs it; `keyward dispatch` runs it alone).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchSettings {
    /// Concurrent claim-and-send loops; 0 in `serve` leaves sending to
    /// separate `keyward dispatch` processes.
    pub workers: usize,
    /// Replies leased per claim.
    pub batch_size: u32,
    /// How long a claimed reply stays ours; a crashed dispatcher's replies
    /// are taken again after it.
    pub lease_secs: u64,
    /// Attempts before a reply with transient errors is `dead`.
    pub max_attempts: u32,
    /// Backoff after the first transient error, doubled each time (with
    /// jitter) up to `backoff_max_secs`.
    pub backoff_base_secs: f64,
    pub backoff_max_secs: f64,
    /// Timeout of one call to a provider.
    pub http_timeout_secs: u64,
    /// Pause between claims when nothing is due.
    pub poll_interval_ms: u64,
    /// Broadcast messages each sender may send per second, shared by
    /// every dispatcher (`[dispatch.max_per_second] twilio = 100`); a
    /// sender not named here sends as fast as the dispatcher goes.
    pub max_per_second: BTreeMap<String, f64>,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            batch_size: 32,
            lease_secs: 60,
            max_attempts: 8,
            backoff_base_secs: 5.0,
            backoff_max_secs: 3600.0,
            http_timeout_secs: 10,
            poll_interval_ms: 200,
            max_per_second: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// The URL gateways call; used to check URL-signed webhooks.
    pub public_url: Option<String>,
    /// Region of national numbers such as 0812-3456-7890 (ISO 3166 alpha-2).
    #[serde(default = "default_region")]
    pub default_region: String,
    /// `default_region`, parsed once when the settings are loaded.
    #[serde(skip)]
    pub region: crate::msisdn::Region,
    /// Seconds to wait for in-flight requests on shutdown.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// Messages one number may send per minute before webhooks answer 429
    /// (the gateway retries later); 0 turns the limit off.
    #[serde(default = "default_flood_limit")]
    pub max_messages_per_number_per_minute: u32,
    /// When set, `/metrics` needs `Authorization: Bearer <metrics_token>`.
    #[serde(default)]
    pub metrics_token: Option<Secret>,
    /// Addresses or networks (`10.0.0.0/8`, `127.0.0.1`) of reverse proxies
    /// whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed. Anyone
    /// else's are ignored.
    #[serde(default, deserialize_with = "networks")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Failed authentications (bad tokens, failed console sign-ins) one
    /// client address may have per minute before it gets 429.
    #[serde(default = "default_auth_failures")]
    pub max_auth_failures_per_minute: u32,
    /// Seconds a client may take to send a request's head and its body;
    /// slower requests are cut off (408) so they cannot hold connections.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Open connections per HTTP worker; more wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// This process's name in the `instance` label of its metrics, so
    /// several instances' series stay apart; default `<hostname>:<port>`
    /// (`serve`) or `<hostname>:dispatch` (`keyward dispatch`).
    #[serde(default)]
    pub instance: Option<String>,
}

/// `trusted_proxies`: each an address or a network, parsed once at load.
fn networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|raw| {
            parse_net(raw).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{raw}` is not an address or network such as 10.0.0.0/8"
                ))
            })
        })
        .collect()
}

/// An address (`127.0.0.1`, `::1`) or a network (`10.0.0.0/8`).
fn parse_net(raw: &str) -> Option<ipnet::IpNet> {
    let raw = raw.trim();
    raw.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| raw.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            default_region: default_region(),
            region: crate::msisdn::Region::default(),
            shutdown_grace_secs: default_shutdown_grace(),
            max_messages_per_number_per_minute: default_flood_limit(),
            metrics_token: None,
            trusted_proxies: Vec::new(),
            max_auth_failures_per_minute: default_auth_failures(),
            request_timeout_secs: default_request_timeout(),
            max_connections: default_max_connections(),
            instance: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or key=value form; `DATABASE_URL` sets it too. Without
    /// it, `serve` runs a private cluster in the data dir.
    pub url: Option<Secret>,
    /// Connections of the HTTP workers, split between them (one pool per
    /// worker); default: 8 per core (measured with deploy/bench/run.sh
    /// before group commit: 4 per core left PostgreSQL idle waiting on
    /// commits, 16 per core gained nothing). With group commit a worker's
    /// messages need one connection per batch writer, and the parts of
    /// concatenated messages one each while they are stored; the pool is
    /// opened as connections are needed. The dispatcher has a pool of its
    /// own of the same size.
    pub pool_size: Option<usize>,
    /// Connections of the staff routes (`/v1`, `/console`), a pool apart
    /// from the webhooks' so neither can starve the other.
    #[serde(default = "default_staff_pool_size")]
    pub staff_pool_size: usize,
    /// PEM file of the CA that signed the server's certificate, for
    /// `sslmode=verify-full` / `verify-ca` in the URL (`sslrootcert=` there
    /// does the same; `system` trusts the bundled public roots).
    pub ca_file: Option<PathBuf>,
    /// Inbound messages applied together at most (group commit: those that
    /// arrive while a write is in flight share its statement and commit);
    /// 1 applies each alone.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Batches in flight at once per HTTP worker; default 1. Fewer writers
    /// make larger batches, and a batch's fixed cost is what batching
    /// saves: one writer per worker beat two at 16 connections, matched or
    /// beat them at 64 and matched them at 4 (BENCHMARKS.md, "Group
    /// commit").
    #[serde(default = "default_batch_writers")]
    pub batch_writers: usize,
    /// A hot standby of the database for the staff reads (lookups, lists,
    /// stats, the consent export), so they do not load the primary that
    /// takes every webhook. Same form as `url` (and the same `ca_file`).
    /// Writes (staff opt-outs, tokens, the audit log, sessions) always go
    /// to the primary.
    pub read_url: Option<Secret>,
    /// How far behind the primary the standby may be for a staff read to
    /// be answered from it; further behind, or unreachable, and the read
    /// goes to the primary. 0: only a standby that has replayed all it
    /// received.
    #[serde(default = "default_max_read_lag")]
    pub max_read_lag_secs: u64,
    /// Start on a database that a newer release migrated (it has
    /// migrations this binary does not), applying none: for rolling back a
    /// release whose newer migrations are backward compatible (README,
    /// "Rolling back a release"). Off, such a database is refused. A hole
    /// in the migration history is refused either way.
    #[serde(default)]
    pub accept_newer_schema: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShortcodeSettings {
    pub code: String,
    /// The program a bare keyword (MAU, STOP) applies to.
    pub program: String,
    /// The sender that carries replies.
    #[serde(default = "default_sender")]
    pub reply_via: String,
    /// Language of replies when the keyword does not tell (`id`, `en`, `ru`).
    #[serde(default)]
    pub language: crate::core::Language,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramSettings {
    pub name: String,
    pub brand: String,
    /// How often messages come, per language: `{ id = "2-4 SMS per bulan" }`.
    #[serde(default)]
    pub frequency: BTreeMap<crate::core::Language, String>,
    #[serde(default)]
    pub double_opt_in: bool,
    /// How long a double opt-in waits for its confirmation.
    #[serde(default = "default_pending_ttl_hours")]
    pub pending_ttl_hours: u32,
    /// Keywords this program adds to the built-in ones.
    #[serde(default)]
    pub keywords: KeywordSettings,
    /// Replacements of the built-in reply templates, per language:
    /// `[programs.replies.id] welcome = "…"`.
    #[serde(default)]
    pub replies: crate::core::ReplyOverrides,
    /// How often and when broadcasts may reach one subscriber
    /// (`[programs.sending]`; defaults: 4 per 30 days, 72 h apart,
    /// 08:00–17:00 every day, in the subscriber's time).
    #[serde(default)]
    pub sending: crate::core::SendingPolicy,
    /// The program's time zone (IANA, e.g. `Asia/Jakarta`), used for a
    /// subscriber whose own zone staff did not record; without it, every
    /// zone the number may be in.
    #[serde(default)]
    pub timezone: Option<String>,
    /// What the style lint's findings do to a broadcast: `refuse` it
    /// (default) or only `warn`.
    #[serde(default)]
    pub lint: LintMode,
}

/// What a program does with the style lint's findings on a broadcast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LintMode {
    #[default]
    Refuse,
    Warn,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KeywordSettings {
    #[serde(default)]
    pub opt_in: Vec<String>,
    #[serde(default)]
    pub opt_out: Vec<String>,
    #[serde(default)]
    pub help: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    pub twilio: Option<TwilioSettings>,
    pub vonage: Option<VonageSettings>,
    pub plivo: Option<PlivoSettings>,
    pub telnyx: Option<TelnyxSettings>,
    pub infobip: Option<InfobipSettings>,
    pub kannel: Option<KannelSettings>,
    pub jasmin: Option<JasminSettings>,
    pub generic: Option<GenericSettings>,
}

impl GatewaySettings {
    /// No gateway configured at all.
    pub fn is_empty(&self) -> bool {
        let GatewaySettings {
            twilio,
            vonage,
            plivo,
            telnyx,
            infobip,
            kannel,
            jasmin,
            generic,
        } = self;
        twilio.is_none()
            && vonage.is_none()
            && plivo.is_none()
            && telnyx.is_none()
            && infobip.is_none()
            && kannel.is_none()
            && jasmin.is_none()
            && generic.is_none()
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum VonageSignatureMethod {
    /// MD5 of the sorted parameters followed by the secret (Vonage's default).
    #[default]
    Md5hash,
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageSettings {
    pub api_key: String,
    pub api_secret: Option<Secret>,
    /// Signs inbound webhooks (`sig`); required.
    pub signature_secret: Secrets,
    #[serde(default)]
    pub signature_method: VonageSignatureMethod,
    #[serde(default = "default_vonage_api")]
    pub api_base: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlivoSettings {
    pub auth_id: String,
    /// Signs inbound webhooks (`X-Plivo-Signature-V3`) and authenticates sends.
    pub auth_token: Secrets,
    #[serde(default = "default_plivo_api")]
    pub api_base: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelnyxSettings {
    pub api_key: Option<Secret>,
    /// The account's Ed25519 public key (base64), from the Mission Control portal.
    pub public_key: String,
    #[serde(default = "default_telnyx_api")]
    pub api_base: String,
}

/// Gateways that do not sign their webhooks are authenticated by a shared
/// secret: the password of HTTP Basic auth, or `token=` in the URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfobipSettings {
    pub secret: Secrets,
    pub api_key: Option<Secret>,
    #[serde(default = "default_infobip_api")]
    pub api_base: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KannelSettings {
    pub secret: Secrets,
    /// smsbox's sendsms URL, e.g. `http://127.0.0.1:13013/cgi-bin/sendsms`.
    pub sendsms_url: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JasminSettings {
    pub secret: Secrets,
    #[serde(default = "default_jasmin_api")]
    pub api_base: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSettings {
    pub account_sid: String,
    pub auth_token: Secrets,
    #[serde(default = "default_twilio_api")]
    pub api_base: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GenericSettings {
    /// HMAC key(s), inbound and outbound. Required unless `allow_unsigned`.
    pub secret: Option<Secrets>,
    /// Where the generic sender POSTs replies.
    pub reply_url: Option<String>,
    /// Accept unsigned inbound requests: anyone who can reach the port can
    /// then subscribe any number. Refused unless `listen` is a loopback
    /// address; meant for trying keyward out on one machine.
    #[serde(default)]
    pub allow_unsigned: bool,
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_owned()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}
fn default_region() -> String {
    "ID".to_owned()
}
fn default_shutdown_grace() -> u64 {
    30
}
fn default_flood_limit() -> u32 {
    60
}
impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: None,
            staff_pool_size: default_staff_pool_size(),
            ca_file: None,
            max_batch: default_max_batch(),
            batch_writers: default_batch_writers(),
            read_url: None,
            max_read_lag_secs: default_max_read_lag(),
            accept_newer_schema: false,
        }
    }
}

fn default_max_read_lag() -> u64 {
    5
}

fn default_auth_failures() -> u32 {
    10
}
fn default_max_batch() -> usize {
    32
}
fn default_batch_writers() -> usize {
    1
}
fn default_staff_pool_size() -> usize {
    4
}
fn default_request_timeout() -> u64 {
    10
}
fn default_max_connections() -> usize {
    // actix's own default; stated so that it is a setting.
    25_000
}
fn default_pending_ttl_hours() -> u32 {
    24
}
fn default_sender() -> String {
    "log".to_owned()
}
fn default_twilio_api() -> String {
    "https://api.twilio.com".to_owned()
}
fn default_vonage_api() -> String {
    "https://rest.nexmo.com".to_owned()
}
fn default_plivo_api() -> String {
    "https://api.plivo.com".to_owned()
}
fn default_telnyx_api() -> String {
    "https://api.telnyx.com".to_owned()
}
fn default_infobip_api() -> String {
    "https://api.infobip.com".to_owned()
}
fn default_jasmin_api() -> String {
    "http://127.0.0.1:1401".to_owned()
}

impl Settings {
    /// Reads `path` (or, when `None`, `KEYWARD_CONFIG`, else `keyward.toml`
    /// if it exists) and the environment; validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(path, &env)
    }

    /// Like [`Settings::load`] with an explicit environment.
    pub fn load_from(path: Option<&Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let explicit = path
            .map(Path::to_path_buf)
            .or_else(|| lookup(env, "KEYWARD_CONFIG").map(PathBuf::from));
        let file = match explicit {
            Some(p) => Some(p),
            None => Some(PathBuf::from("keyward.toml")).filter(|p| p.is_file()),
        };
        let Some(file) = file else {
            return Self::from_sources(None, env);
        };
        let text = std::fs::read_to_string(&file).map_err(|e| {
            ConfigError(vec![format!(
                "cannot read config file {}: {e}",
                file.display()
            )])
        })?;
        let mut settings = Self::from_sources(Some((&file, &text)), env)?;
        settings.config = Some(file);
        Ok(settings)
    }

    /// Settings from TOML text (`None`: no file, built-in defaults) and an
    /// environment.
    pub fn from_sources(
        toml: Option<(&Path, &str)>,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let name = toml.map(|(p, _)| p.display().to_string());
        let located = |e: config::ConfigError| match &name {
            Some(n) => ConfigError(vec![format!("{n}: {e}")]),
            None => ConfigError(vec![e.to_string()]),
        };
        let mut builder = config::Config::builder();
        if let Some((_, text)) = toml {
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
        }
        let env_map: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("KEYWARD_"))
            .cloned()
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("KEYWARD")
                .prefix_separator("_")
                .separator("__")
                .source(Some(env_map)),
        );
        if let Some(url) = lookup(env, "DATABASE_URL").filter(|u| !u.is_empty()) {
            builder = builder.set_override("database.url", url).map_err(located)?;
        }
        let mut settings: Settings = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(located)?;
        settings.fill_defaults(toml.is_some());
        settings.validate()?;
        if let Some(region) = crate::msisdn::Region::parse(&settings.service.default_region) {
            settings.service.region = region;
        }
        Ok(settings)
    }

    /// With no short codes and no programs configured, run the built-in
    /// default: short code 3344, program `default`, the `log` sender. Only
    /// with no configuration file and no gateway configured at all does
    /// the default also bring the `generic` gateway, unsigned — and only on
    /// a loopback address (checked in `validate`): a written configuration
    /// never gets an unauthenticated door it did not ask for.
    fn fill_defaults(&mut self, from_file: bool) {
        if self.shortcodes.is_empty() && self.programs.is_empty() {
            self.shortcodes.push(ShortcodeSettings {
                code: "3344".into(),
                program: "default".into(),
                reply_via: "log".into(),
                language: crate::core::Language::Id,
            });
            self.programs.push(ProgramSettings {
                name: "default".into(),
                brand: "keyward".into(),
                frequency: [
                    (crate::core::Language::Id, "maks. 4 SMS per bulan"),
                    (crate::core::Language::En, "up to 4 msgs/month"),
                    (crate::core::Language::Ru, "до 4 SMS в месяц"),
                ]
                .into_iter()
                .map(|(k, v)| (k, v.to_owned()))
                .collect(),
                double_opt_in: false,
                pending_ttl_hours: default_pending_ttl_hours(),
                keywords: KeywordSettings::default(),
                replies: Default::default(),
                sending: Default::default(),
                timezone: None,
                lint: LintMode::default(),
            });
            if !from_file && self.gateways.is_empty() {
                self.gateways.generic = Some(GenericSettings {
                    allow_unsigned: true,
                    ..GenericSettings::default()
                });
            }
        }
    }

    /// Gateways that accept unauthenticated requests (only `generic` with
    /// `allow_unsigned`), for the start-up warning and `/readyz`.
    pub fn unauthenticated_gateways(&self) -> Vec<&'static str> {
        match &self.gateways.generic {
            Some(g) if g.secret.is_none() && g.allow_unsigned => vec!["generic"],
            _ => vec![],
        }
    }

    /// Every problem the configuration shows by itself, at once, one line
    /// each. What only the components can judge (can a sender send, is a
    /// key a key, does every reply fit the outbox) is `startup::check`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "listen: `{}` is not an address such as 127.0.0.1:8080",
                self.listen
            ));
        }
        let region = &self.service.default_region;
        if crate::msisdn::Region::parse(region).is_none() {
            problems.push(format!(
                "service.default_region: `{region}` is not a two-letter region such as ID, RU or US"
            ));
        }
        if let Some(url) = &self.service.public_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(format!(
                    "service.public_url: `{url}` must start with https:// or http://"
                ));
            }
        }
        if self.service.request_timeout_secs == 0
            || self.service.max_connections == 0
            || self.service.max_auth_failures_per_minute == 0
        {
            problems.push(
                "service: request_timeout_secs, max_connections and max_auth_failures_per_minute must be at least 1"
                    .into(),
            );
        }
        if let Some(t) = &self.service.metrics_token {
            if t.expose().len() < 16 || is_placeholder(t.expose()) {
                problems.push(
                    "service.metrics_token: needs at least 16 characters, not a placeholder".into(),
                );
            }
        }
        let d = &self.dispatch;
        if d.batch_size == 0 || d.max_attempts == 0 || d.lease_secs == 0 || d.http_timeout_secs == 0
        {
            problems.push(
                "dispatch: batch_size, max_attempts, lease_secs and http_timeout_secs must be at least 1"
                    .into(),
            );
        }
        for (sender, rate) in &d.max_per_second {
            if !(rate.is_finite() && *rate > 0.0) {
                problems.push(format!(
                    "dispatch.max_per_second.{sender}: must be a number above 0"
                ));
            }
        }
        if d.http_timeout_secs >= d.lease_secs {
            problems.push(
                "dispatch: http_timeout_secs must be shorter than lease_secs, or a slow send could be sent twice"
                    .into(),
            );
        }
        if !(d.backoff_base_secs > 0.0 && d.backoff_max_secs >= d.backoff_base_secs) {
            problems.push("dispatch: need 0 < backoff_base_secs <= backoff_max_secs".into());
        }
        if let Some(name) = &self.service.instance {
            if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                problems
                    .push("service.instance: 1 to 100 characters, no control characters".into());
            }
        }
        if self.database.pool_size == Some(0) || self.database.staff_pool_size == 0 {
            problems.push("database: pool_size and staff_pool_size must be at least 1".into());
        }
        if self.database.max_batch == 0 || self.database.batch_writers == 0 {
            problems.push("database: max_batch and batch_writers must be at least 1".into());
        }
        if self.programs.is_empty() {
            problems.push("programs: at least one [[programs]] is needed".into());
        }
        if self.shortcodes.is_empty() {
            problems.push("shortcodes: at least one [[shortcodes]] is needed".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.programs.iter().enumerate() {
            let at = format!("programs[{i}] `{}`", p.name);
            if crate::core::ProgramName::parse(&p.name).is_err() {
                problems.push(format!(
                    "{at}: name must be lowercase letters, digits, `-` or `_` (at most 64)"
                ));
            }
            if !seen.insert(p.name.as_str()) {
                problems.push(format!("{at}: defined twice"));
            }
            if p.brand.trim().is_empty() {
                problems.push(format!("{at}: brand is empty"));
            }
            // Without a frequency of its own, the welcome says the cap
            // (`SendingPolicy::frequency_text`); one written by hand may not
            // promise more than the cap allows.
            for (lang, text) in &p.frequency {
                if let Err(e) = p.sending.check_frequency_text(text) {
                    problems.push(format!("{at}: frequency.{lang}: {e}"));
                }
            }
            if let Err(e) = p.sending.validate() {
                problems.push(format!("{at}: sending: {e}"));
            }
            if let Some(tz) = &p.timezone {
                if tz.parse::<chrono_tz::Tz>().is_err() {
                    problems.push(format!(
                        "{at}: timezone `{tz}` is not an IANA time zone such as Asia/Jakarta"
                    ));
                }
            }
            if p.pending_ttl_hours == 0 {
                problems.push(format!("{at}: pending_ttl_hours must be at least 1"));
            }
            for problem in p.replies.lint() {
                problems.push(format!("{at}: {problem}"));
            }
        }
        let mut codes = std::collections::BTreeSet::new();
        for (i, s) in self.shortcodes.iter().enumerate() {
            let at = format!("shortcodes[{i}] `{}`", s.code);
            if s.code.is_empty() || s.code.len() > 32 {
                problems.push(format!("{at}: code must be 1 to 32 characters"));
            }
            if !codes.insert(s.code.as_str()) {
                problems.push(format!("{at}: defined twice"));
            }
            if !self.programs.iter().any(|p| p.name == s.program) {
                problems.push(format!(
                    "{at}: program `{}` is not defined in [[programs]]",
                    s.program
                ));
            }
        }
        let g = &self.gateways;
        let shared_secrets = [
            (
                "gateways.generic.secret",
                g.generic.as_ref().and_then(|g| g.secret.as_ref()),
            ),
            (
                "gateways.infobip.secret",
                g.infobip.as_ref().map(|g| &g.secret),
            ),
            (
                "gateways.kannel.secret",
                g.kannel.as_ref().map(|g| &g.secret),
            ),
            (
                "gateways.jasmin.secret",
                g.jasmin.as_ref().map(|g| &g.secret),
            ),
            (
                "gateways.vonage.signature_secret",
                g.vonage.as_ref().map(|g| &g.signature_secret),
            ),
        ];
        for (key, secrets) in shared_secrets {
            let Some(secrets) = secrets else { continue };
            if secrets.all().is_empty() || secrets.all().iter().any(|s| s.expose().len() < 16) {
                problems.push(format!("{key}: each secret needs at least 16 characters"));
            }
            if secrets.all().iter().any(|s| is_placeholder(s.expose())) {
                problems.push(format!(
                    "{key}: is the example's placeholder; use a long random string (e.g. `openssl rand -hex 32`)"
                ));
            }
        }
        if let Some(generic) = &g.generic {
            let loopback = self
                .listen
                .parse::<SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback());
            match (&generic.secret, generic.allow_unsigned) {
                (Some(_), true) => problems.push(
                    "gateways.generic: allow_unsigned = true with a secret; remove one of them".into(),
                ),
                (None, false) => problems.push(
                    "gateways.generic.secret: is required (anyone reaching the webhook could forge consent); set allow_unsigned = true only to try keyward on one machine"
                        .into(),
                ),
                (None, true) if !loopback => problems.push(format!(
                    "gateways.generic.allow_unsigned: refused while listening on {}, which is not a loopback address; set gateways.generic.secret",
                    self.listen
                )),
                // A proxy on the same machine would make loopback public.
                (None, true) if !self.service.trusted_proxies.is_empty() => problems.push(
                    "gateways.generic.allow_unsigned: refused behind service.trusted_proxies (a proxy makes loopback public); set gateways.generic.secret"
                        .into(),
                ),
                _ => {}
            }
        }
        if let Some(k) = &g.kannel {
            let in_url = |key: &str| {
                k.sendsms_url.as_deref().is_some_and(|u| {
                    u.split_once('?').is_some_and(|(_, q)| {
                        form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == key)
                    })
                })
            };
            let missing = (k.username.is_none() && !in_url("username"))
                || (k.password.is_none() && !in_url("password"));
            if k.sendsms_url.is_some() && missing {
                // smsbox answers every sendsms without them with 403, so
                // every reply would end `failed`.
                problems.push(
                    "gateways.kannel: sendsms_url needs username and password (the sendsms-user of smsbox)"
                        .into(),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        // validated in `validate`
        self.listen.parse().unwrap_or_else(|_| {
            DEFAULT_LISTEN
                .parse()
                .expect("the default listen address parses")
        })
    }

    pub fn pool_size(&self) -> usize {
        self.database
            .pool_size
            .unwrap_or_else(|| 8 * std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

/// A secret copied from an example rather than made up.
pub fn is_placeholder(secret: &str) -> bool {
    let lower = secret.to_ascii_lowercase();
    [
        "change-me",
        "changeme",
        "change_me",
        "replace-me",
        "your-secret",
        "…",
    ]
    .iter()
    .any(|p| lower.contains(p))
        || (secret.starts_with('<') && secret.ends_with('>'))
        || secret
            .chars()
            .all(|c| c == secret.chars().next().unwrap_or(c))
}

fn lookup(env: &[(String, String)], key: &str) -> Option<String> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn from_toml(text: &str, pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_sources(Some((Path::new("keyward.toml"), text)), &env(pairs))
    }

    const VALID: &str = r#"
        [service]
        public_url = "https://sms.example.com"
        default_region = "ID"

        [[shortcodes]]
        code = "3344"
        program = "promo"
        reply_via = "twilio"

        [[programs]]
        name = "promo"
        brand = "Toko Maju"
        frequency = { id = "2-4 SMS per bulan", en = "2-4 msgs/month" }

        [gateways.twilio]
        account_sid = "AC123"
        auth_token = "secret-token"
    "#;

    #[test]
    fn no_file_and_no_env_give_the_built_in_default() {
        let s = Settings::from_sources(None, &[]).expect("defaults are valid");
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from(".keyward"));
        assert_eq!(s.shortcodes.len(), 1);
        assert_eq!(s.shortcodes[0].code, "3344");
        assert_eq!(s.shortcodes[0].program, "default");
        assert_eq!(s.shortcodes[0].reply_via, "log");
        assert_eq!(s.programs[0].name, "default");
        assert!(s.gateways.generic.is_some());
        assert!(s.database.url.is_none());
        assert!(!s.database.accept_newer_schema);
    }

    #[test]
    fn accept_newer_schema_is_read_from_the_file_and_the_environment() {
        let accepts = |file: &str, pairs: &[(&str, &str)]| {
            let s = from_toml(file, pairs).expect("valid");
            s.database.accept_newer_schema
        };
        assert!(!accepts(VALID, &[]), "off by default");
        let file = format!("{VALID}\n[database]\naccept_newer_schema = true\n");
        assert!(accepts(&file, &[]));
        assert!(accepts(
            VALID,
            &[("KEYWARD_DATABASE__ACCEPT_NEWER_SCHEMA", "true")]
        ));
    }

    #[test]
    fn a_valid_file_is_read_into_typed_settings() {
        let s = from_toml(VALID, &[]).expect("valid");
        assert_eq!(s.programs[0].brand, "Toko Maju");
        assert_eq!(
            s.programs[0].frequency[&crate::core::Language::Id],
            "2-4 SMS per bulan"
        );
        let twilio = s.gateways.twilio.expect("twilio configured");
        assert_eq!(twilio.auth_token.all()[0].expose(), "secret-token");
        assert_eq!(twilio.api_base, "https://api.twilio.com");
        assert!(
            s.gateways.generic.is_none(),
            "defaults only fill an empty config"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let s = from_toml(
            VALID,
            &[
                ("KEYWARD_LISTEN", "0.0.0.0:9999"),
                ("KEYWARD_GATEWAYS__TWILIO__AUTH_TOKEN", "from-env"),
                ("KEYWARD_SERVICE__DEFAULT_REGION", "RU"),
                ("DATABASE_URL", "postgres://u@localhost/db"),
            ],
        )
        .expect("valid");
        assert_eq!(s.listen, "0.0.0.0:9999");
        assert_eq!(s.service.default_region, "RU");
        assert_eq!(
            s.gateways.twilio.unwrap().auth_token.all()[0].expose(),
            "from-env"
        );
        assert_eq!(
            s.database.url.unwrap().expose(),
            "postgres://u@localhost/db"
        );
    }

    #[test]
    fn every_problem_is_reported_on_its_own_line() {
        let bad = r#"
            listen = "not an address"
            [service]
            default_region = "Indonesia"
            [[shortcodes]]
            code = "3344"
            program = "missing"
            reply_via = "carrier-pigeon"
            [[programs]]
            name = "Promo!"
            brand = ""
        "#;
        let err = from_toml(bad, &[]).expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "listen",
            "default_region",
            "program `missing` is not defined",
            "name must be lowercase",
            "brand is empty",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
        assert_eq!(err.0.len(), text.lines().count(), "one line per problem");
        assert!(err.0.len() >= 5);
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let err = from_toml("[servise]\npublic_url = \"https://x\"\n", &[]).expect_err("typo");
        assert!(err.to_string().contains("servise"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = from_toml(VALID, &[]).expect("valid");
        let debug = format!("{s:?}");
        assert!(!debug.contains("secret-token"), "{debug}");
    }

    #[test]
    fn gateway_secrets_and_keys_are_checked() {
        let bad = r#"
            [[shortcodes]]
            code = "3344"
            program = "p"
            [[programs]]
            name = "p"
            brand = "B"
            frequency = { en = "weekly" }
            [gateways.kannel]
            secret = "short"
            [gateways.telnyx]
            public_key = "not-a-key"
            [gateways.plivo]
            auth_id = "MA1"
            auth_token = "token"
        "#;
        let text = from_toml(bad, &[]).expect_err("invalid").to_string();
        // The secret's length is the file's to say; the key and the
        // token are the gateways' (`startup::check`).
        assert!(text.contains("gateways.kannel.secret"), "{text}");
    }

    const ONLY_TWILIO: &str = r#"
        [service]
        public_url = "https://sms.example.com"
        [gateways.twilio]
        account_sid = "AC123"
        auth_token = "secret-token"
    "#;

    #[test]
    fn a_file_with_gateways_but_no_programs_gets_no_unsigned_generic_gateway() {
        let s = from_toml(ONLY_TWILIO, &[]).expect("valid");
        assert!(s.gateways.generic.is_none(), "{:?}", s.gateways.generic);
        assert_eq!(
            s.programs[0].name, "default",
            "programs are still defaulted"
        );
        assert!(s.unauthenticated_gateways().is_empty());
        let empty_file = from_toml("", &[]).expect("valid");
        assert!(
            empty_file.gateways.generic.is_none(),
            "a file is never the pure default"
        );
        let env_only = Settings::from_sources(
            None,
            &env(&[(
                "KEYWARD_GATEWAYS__INFOBIP__SECRET",
                "infobip-secret-0123456789",
            )]),
        )
        .expect("valid");
        assert!(
            env_only.gateways.generic.is_none(),
            "no defaults beside a configured gateway"
        );
    }

    #[test]
    fn the_pure_default_is_unsigned_on_loopback_only() {
        let s = Settings::from_sources(None, &[]).expect("valid");
        assert_eq!(s.unauthenticated_gateways(), ["generic"]);
        let err = Settings::from_sources(None, &env(&[("KEYWARD_LISTEN", "0.0.0.0:8080")]))
            .expect_err("unsigned on every interface")
            .to_string();
        assert!(err.contains("allow_unsigned: refused"), "{err}");
    }

    #[test]
    fn a_generic_gateway_without_a_secret_must_say_allow_unsigned_and_stay_local() {
        let base = |extra: &str| format!("{ONLY_TWILIO}\n[gateways.generic]\n{extra}\n");
        let err = from_toml(&base(""), &[])
            .expect_err("no secret")
            .to_string();
        assert!(
            err.contains("gateways.generic.secret: is required"),
            "{err}"
        );
        let s = from_toml(&base("allow_unsigned = true"), &[]).expect("explicitly unsigned");
        assert_eq!(s.unauthenticated_gateways(), ["generic"]);
        let err = from_toml(
            &format!(
                "listen = \"0.0.0.0:8080\"\n{}",
                base("allow_unsigned = true")
            ),
            &[],
        )
        .expect_err("unsigned in public")
        .to_string();
        assert!(err.contains("not a loopback address"), "{err}");
        let behind_proxy = base("allow_unsigned = true")
            .replace("[service]", "[service]\ntrusted_proxies = [\"127.0.0.1\"]");
        let err = from_toml(&behind_proxy, &[])
            .expect_err("unsigned behind a proxy")
            .to_string();
        assert!(err.contains("a proxy makes loopback public"), "{err}");
        let err = from_toml(
            &base("secret = \"generic-secret-0123456789\"\nallow_unsigned = true"),
            &[],
        )
        .expect_err("both")
        .to_string();
        assert!(err.contains("remove one of them"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks_parsed_at_load() {
        let s = from_toml(&format!("{ONLY_TWILIO}\n"), &[]).expect("valid");
        assert!(s.service.trusted_proxies.is_empty());
        let with = ONLY_TWILIO.replace(
            "[service]",
            "[service]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"::1\"]",
        );
        let s = from_toml(&with, &[]).expect("valid");
        let shown: Vec<String> = s
            .service
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(shown, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        let bad = ONLY_TWILIO.replace("[service]", "[service]\ntrusted_proxies = [\"nginx\"]");
        let err = from_toml(&bad, &[])
            .expect_err("not an address")
            .to_string();
        assert!(
            err.contains("`nginx` is not an address or network"),
            "{err}"
        );
    }

    #[test]
    fn the_example_configuration_secret_is_refused() {
        let example = include_str!("../deploy/keyward.example.toml");
        let err = from_toml(example, &[])
            .expect_err("placeholder")
            .to_string();
        assert!(err.contains("placeholder"), "{err}");
        let fixed = example.replace(
            "change-me-to-a-long-random-string",
            "4f9c2b7e1d8a6035c9e2b41f7a0d3e86",
        );
        from_toml(&fixed, &[]).expect("the example with a real secret is valid");
    }
}
