//! TLS to PostgreSQL through keyward's own pool and migrations: a private
//! cluster with `ssl=on`, a CA and a server certificate for `localhost`
//! made here, TCP on 127.0.0.1 and a pg_hba.conf that accepts TCP only
//! over TLS (`hostssl`). No PostgreSQL binaries is a loud failure.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use keyward::db::{self, SslMode, Target};
use keyward::embedded::{Cluster, SUPERUSER};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A running TLS-only cluster; dropping it (at the end, or on a panic)
/// stops the server by its PID.
struct TlsServer {
    cluster: Cluster,
    dir: PathBuf,
    port: u16,
    ca: PathBuf,
    wrong_ca: PathBuf,
}

impl TlsServer {
    fn start() -> Self {
        let mut options = support::throwaway_cluster_options();
        let dir = options.dir.clone();
        fs::create_dir_all(&dir).expect("create the cluster dir");
        let (ca, server_cert, server_key) = make_ca_and_server_certificate("keyward test CA");
        let (wrong_ca, _, _) = make_ca_and_server_certificate("another CA");
        let files = [
            ("ca.pem", ca.as_str(), 0o644),
            ("wrong-ca.pem", wrong_ca.as_str(), 0o644),
            ("server.crt", server_cert.as_str(), 0o644),
            // PostgreSQL refuses a key others can read.
            ("server.key", server_key.as_str(), 0o600),
            (
                "pg_hba.conf",
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
                0o644,
            ),
        ];
        for (name, text, mode) in files {
            let path = dir.join(name);
            fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            give_to_server_account(&path);
        }
        let port = free_port();
        let path = |name: &str| dir.join(name).display().to_string();
        options.settings = vec![
            ("listen_addresses".into(), "127.0.0.1".into()),
            ("port".into(), port.to_string()),
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), path("server.crt")),
            ("ssl_key_file".into(), path("server.key")),
            ("hba_file".into(), path("pg_hba.conf")),
        ];
        let cluster = support::start_or_fail(&options);
        Self {
            cluster,
            ca: dir.join("ca.pem"),
            wrong_ca: dir.join("wrong-ca.pem"),
            dir,
            port,
        }
    }

    /// key=value settings for TCP to 127.0.0.1, with `host` as the name
    /// the certificate is checked against.
    fn tcp(&self, host: &str, rest: &str) -> String {
        format!(
            "host={host} hostaddr=127.0.0.1 port={} user={SUPERUSER} dbname=postgres connect_timeout=10 {rest}",
            self.port
        )
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.cluster.stop(std::time::Duration::from_secs(30));
    }
}

/// A fresh CA called `ca_name` (PEM) and a server certificate and key (PEM)
/// it signed for `localhost`.
fn make_ca_and_server_certificate(ca_name: &str) -> (String, String, String) {
    let name = "localhost";
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).expect("self-signed CA");
    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec![name.to_owned()]).expect("server params");
    server.distinguished_name.push(DnType::CommonName, name);
    let server = server.signed_by(&key, &ca, &ca_key).expect("server cert");
    (ca.pem(), server.pem(), key.serialize_pem())
}

/// When we are root, PostgreSQL runs as `postgres` and must own its key.
fn give_to_server_account(path: &Path) {
    if !nix::unistd::Uid::effective().is_root() {
        return;
    }
    let user = nix::unistd::User::from_name("postgres")
        .expect("look up the postgres account")
        .expect("a postgres account (Debian's postgresql package creates it)");
    nix::unistd::chown(path, Some(user.uid), Some(user.gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Is this connection encrypted, as the server sees it?
async fn connection_is_encrypted(pool: &deadpool_postgres::Pool) -> Result<bool, String> {
    let client = pool
        .get()
        .await
        .map_err(|e| db::pool_error(e).to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// Migrates (one connection) and asks a pooled connection whether it is
/// encrypted: both are keyward's own code paths.
async fn through_keyward(target: &Target) -> Result<bool, String> {
    db::migrate(target, false)
        .await
        .map_err(|e| e.to_string())?;
    let pool = db::pool(target, 2).map_err(|e| e.to_string())?;
    connection_is_encrypted(&pool).await
}

async fn refused(target: &Target) -> (String, String) {
    let migrate = db::migrate(target, false)
        .await
        .expect_err("migrate must be refused")
        .to_string();
    let pool = db::pool(target, 1).expect("a pool is built without connecting");
    let pool = connection_is_encrypted(&pool)
        .await
        .expect_err("a pooled connection must be refused");
    (migrate, pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_follows_sslmode() {
    let server = tokio::task::spawn_blocking(TlsServer::start)
        .await
        .expect("start the TLS cluster");
    let ca = server.ca.display().to_string();

    // require without a CA: encrypted, not verified, and said so.
    let target = Target::parse(&server.tcp("localhost", "sslmode=require"), None).unwrap();
    assert!(
        target.security_warning().unwrap().contains("not checked"),
        "require without a CA must warn"
    );
    assert_eq!(through_keyward(&target).await, Ok(true), "sslmode=require");

    // verify-full with the CA (key=value, sslrootcert) and the right name.
    let target = Target::parse(
        &server.tcp(
            "localhost",
            &format!("sslmode=verify-full sslrootcert={ca}"),
        ),
        None,
    )
    .unwrap();
    assert_eq!(target.tls.mode(), SslMode::VerifyFull);
    assert_eq!(target.security_warning(), None);
    assert_eq!(through_keyward(&target).await, Ok(true), "verify-full");

    // The same as a URL, with the CA from database.ca_file.
    let url = format!(
        "postgres://{SUPERUSER}@localhost:{}/postgres?hostaddr=127.0.0.1&sslmode=verify-full",
        server.port
    );
    let target = Target::parse(&url, Some(&server.ca)).unwrap();
    assert_eq!(
        through_keyward(&target).await,
        Ok(true),
        "verify-full, URL + ca_file"
    );

    // verify-ca checks the chain only: another name is fine.
    let target = Target::parse(
        &server.tcp(
            "db.not-in-the-certificate.test",
            &format!("sslmode=verify-ca sslrootcert={ca}"),
        ),
        None,
    )
    .unwrap();
    assert_eq!(through_keyward(&target).await, Ok(true), "verify-ca");

    // The default, prefer, takes the TLS the server offers.
    let target = Target::parse(&server.tcp("localhost", ""), None).unwrap();
    assert_eq!(target.tls.mode(), SslMode::Prefer);
    assert_eq!(through_keyward(&target).await, Ok(true), "prefer");

    // verify-full with a CA that did not sign the server's certificate.
    let wrong = server.wrong_ca.display().to_string();
    let target = Target::parse(
        &server.tcp(
            "localhost",
            &format!("sslmode=verify-full sslrootcert={wrong}"),
        ),
        None,
    )
    .unwrap();
    let (migrate, pool) = refused(&target).await;
    for err in [&migrate, &pool] {
        assert!(
            err.contains("UnknownIssuer") && err.contains("not signed by the CA"),
            "wrong CA: {err}"
        );
    }

    // require with a CA behaves as verify-ca (libpq's rule): refused too.
    let target = Target::parse(
        &server.tcp("localhost", &format!("sslmode=require sslrootcert={wrong}")),
        None,
    )
    .unwrap();
    let (migrate, _) = refused(&target).await;
    assert!(
        migrate.contains("UnknownIssuer"),
        "require + wrong CA: {migrate}"
    );

    // verify-full with a host name the certificate does not name.
    let target = Target::parse(
        &server.tcp(
            "db.not-in-the-certificate.test",
            &format!("sslmode=verify-full sslrootcert={ca}"),
        ),
        None,
    )
    .unwrap();
    let (migrate, pool) = refused(&target).await;
    for err in [&migrate, &pool] {
        assert!(
            err.contains("not valid for name") && err.contains("db.not-in-the-certificate.test"),
            "wrong host name: {err}"
        );
    }

    // disable against a hostssl-only server: the server refuses clear text.
    let target = Target::parse(&server.tcp("localhost", "sslmode=disable"), None).unwrap();
    let (migrate, pool) = refused(&target).await;
    for err in [&migrate, &pool] {
        assert!(
            err.contains("no pg_hba.conf entry") && err.contains("no encryption"),
            "disable: {err}"
        );
    }

    // The Unix socket never carries TLS, whatever the mode: the default and
    // require both connect, in clear text, as libpq does.
    for mode in ["", "sslmode=require"] {
        let socket = format!(
            "host={} port={} user={SUPERUSER} dbname=postgres {mode}",
            server.dir.display(),
            server.port
        );
        let target = Target::parse(&socket, None).unwrap();
        assert_eq!(target.security_warning(), None);
        assert_eq!(
            through_keyward(&target).await,
            Ok(false),
            "Unix socket, {mode:?}"
        );
    }

    // The command line: DATABASE_URL plus KEYWARD_DATABASE__CA_FILE.
    let url = format!(
        "postgres://{SUPERUSER}@localhost:{}/postgres?hostaddr=127.0.0.1&sslmode=verify-full",
        server.port
    );
    let (ok, out) = keyward_migrate(&url, &server.ca);
    assert!(ok, "keyward migrate, verify-full: {out}");
    assert!(out.contains("migration(s) applied"), "{out}");
    let (ok, out) = keyward_migrate(&url, &server.wrong_ca);
    assert!(!ok, "keyward migrate with a wrong CA must fail: {out}");
    assert!(out.contains("UnknownIssuer"), "{out}");

    drop(server);
}

/// Runs `keyward migrate`; did it succeed, and what did it print?
fn keyward_migrate(url: &str, ca_file: &Path) -> (bool, String) {
    let dir = tempfile::tempdir().expect("a working directory without keyward.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("migrate")
        .current_dir(dir.path())
        .env_remove("KEYWARD_CONFIG")
        .env("DATABASE_URL", url)
        .env("KEYWARD_DATABASE__CA_FILE", ca_file)
        .output()
        .expect("run keyward migrate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
