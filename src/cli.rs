//! The `keyward` command line.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{ConfigError, Settings};
use crate::db::Target;
use crate::dispatch::Dispatcher;
use crate::embedded::{self, ClusterOptions, RunAs, SharedCluster, Tenure};
use crate::startup::Application;

#[derive(Debug, Parser)]
#[command(name = "keyward", version, about = "Keyword-driven SMS subscriptions")]
pub struct Cli {
    /// Configuration file (default: $KEYWARD_CONFIG, else ./keyward.toml if present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (and, without DATABASE_URL, a private PostgreSQL).
    Serve,
    /// Apply the sql/ migrations; safe to run twice or concurrently.
    Migrate,
    /// Run only the reply dispatcher (for scaling it apart from `serve`).
    Dispatch,
    /// Validate the configuration; exit 1 with one line per problem.
    CheckConfig {
        /// Configuration file to check.
        file: Option<PathBuf>,
    },
    /// API tokens of support staff.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Support staff's view of a number.
    Subscriber {
        #[command(subcommand)]
        action: SubscriberCommand,
    },
    /// Broadcasts: create from a JSON file, follow, pause, resume, cancel.
    Broadcast {
        #[command(subcommand)]
        action: BroadcastCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum BroadcastCommand {
    /// Plan and store a broadcast from a JSON file (`-`: standard input),
    /// shaped as the body of `POST /v1/broadcasts`. Running it again with
    /// the same file is the same broadcast (the key is the file's hash).
    Create {
        file: PathBuf,
        /// Count and check only.
        #[arg(long)]
        dry_run: bool,
    },
    /// Every broadcast, newest first.
    List,
    /// A broadcast's progress; on a terminal with --follow, a live
    /// progress bar until nothing is left to send.
    Show {
        id: i64,
        #[arg(long)]
        follow: bool,
    },
    Pause {
        id: i64,
    },
    Resume {
        id: i64,
    },
    Cancel {
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once; only its SHA-256 is stored.
    Create {
        /// `support` (read, record staff opt-outs), `marketing` (broadcasts
        /// only) or `admin` (everything, and manage tokens).
        #[arg(long, value_parser = ["support", "marketing", "admin"])]
        role: String,
        /// Who holds it; recorded as the actor of their opt-outs and requests.
        #[arg(long)]
        name: String,
    },
    /// Every token: name, role, created, last used, revoked.
    List,
    /// Revoke the active token with this name (its console sessions end too).
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SubscriberCommand {
    /// Programs, consent evidence and timeline of a number, in any common form.
    Show {
        number: String,
        /// Timeline entries to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// Runs the command; the returned code is the process's exit status.
pub fn run(cli: Cli) -> i32 {
    let config_path = match &cli.command {
        Command::CheckConfig { file: Some(f) } => Some(f.clone()),
        _ => cli.config.clone(),
    };
    let settings = match crate::startup::load(config_path.as_deref()) {
        Ok(s) => Arc::new(s),
        Err(ConfigError(problems)) => {
            for p in problems {
                eprintln!("config: {p}");
            }
            return 1;
        }
    };
    if let Command::CheckConfig { .. } = cli.command {
        // A closed pipe (`| head`) ends the report quietly.
        let _ = report_replies(&settings, &mut std::io::stdout().lock());
        return 0;
    }
    if matches!(
        cli.command,
        Command::Token { .. } | Command::Subscriber { .. } | Command::Broadcast { .. }
    ) {
        crate::telemetry::init_for_commands();
    } else {
        crate::telemetry::init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve(settings).await,
            Command::Migrate => migrate(settings).await,
            Command::Dispatch => dispatch(settings).await,
            Command::CheckConfig { .. } => Ok(()),
            Command::Token { action } => with_database(&settings, |pool| token(pool, action)).await,
            Command::Broadcast { action } => {
                let settings2 = settings.clone();
                with_database(&settings, move |pool| broadcast(pool, settings2, action)).await
            }
            Command::Subscriber {
                action: SubscriberCommand::Show { number, limit },
            } => {
                let settings2 = settings.clone();
                with_database(&settings, move |pool| {
                    subscriber_show(pool, settings2, number, limit)
                })
                .await
            }
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Prints every reply as it would be sent, with its encoding and SMS
/// segment count, so an operator sees what a subscriber will get (and pay).
fn report_replies(settings: &Settings, out: &mut impl std::io::Write) -> std::io::Result<()> {
    use crate::core::{encoding, Encoding};
    for (_, warning) in crate::startup::reply_style(settings) {
        writeln!(out, "warning: {warning}")?;
    }
    let programs = crate::programs::Programs::new(settings);
    for (program, lang, kind, text) in programs.sample_replies() {
        let (enc, segments) = encoding(&text);
        let enc = match enc {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        };
        let plural = if segments == 1 { "" } else { "s" };
        writeln!(
            out,
            "{program}.{lang}.{kind}: {enc}, {segments} segment{plural}: {text}"
        )?;
    }
    writeln!(out, "configuration is valid")
}

/// The database to use: `DATABASE_URL`, or the private cluster in the data
/// dir (returned so the caller keeps it alive, and releases it by
/// [`stop_cluster`]). A command attaches to the cluster a running `serve`
/// (or another command) started instead of starting its own; see
/// `embedded`'s module documentation.
async fn database(
    settings: &Settings,
    tenure: Tenure,
) -> anyhow::Result<(Target, Option<SharedCluster>)> {
    if let Some(url) = &settings.database.url {
        let target = Target::parse(url.expose(), settings.database.ca_file.as_deref())
            .context("DATABASE_URL / database.url")?;
        if let Some(warning) = target.security_warning() {
            tracing::warn!("{warning}");
        }
        return Ok((target, None));
    }
    let data_dir = absolute(&settings.data_dir)?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    let run_as = RunAs::current()?;
    let cluster_dir = embedded::cluster_dir_for(&data_dir, &run_as);
    if !cluster_dir.starts_with(&data_dir) {
        // Root with a data dir the `postgres` account cannot reach: say
        // where the data really is, in the log and next to the data dir.
        let note = data_dir.join("POSTGRES_LOCATION");
        let _ = std::fs::write(
            &note,
            format!(
                "{}\n(PostgreSQL refuses to run as root, so it runs as `postgres`, which cannot reach this directory)\n",
                cluster_dir.display()
            ),
        );
    }
    tracing::info!(
        dir = %cluster_dir.display(),
        "using the private PostgreSQL cluster (no DATABASE_URL); its data is kept across runs"
    );
    let options = ClusterOptions::durable(cluster_dir);
    let cluster = tokio::task::spawn_blocking(move || SharedCluster::acquire(&options, tenure))
        .await
        .context("cluster start-up task failed")??;
    let config = cluster.pg_config("postgres");
    Ok((config.into(), Some(cluster)))
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    })
}

async fn migrate(settings: Arc<Settings>) -> anyhow::Result<()> {
    let (config, cluster) = database(&settings, Tenure::Command).await?;
    let applied = crate::db::migrate(&config, settings.database.accept_newer_schema).await?;
    println!("{applied} migration(s) applied");
    stop_cluster(cluster).await;
    Ok(())
}

async fn serve(settings: Arc<Settings>) -> anyhow::Result<()> {
    let (config, cluster) = database(&settings, Tenure::LongRunning).await?;
    let result = serve_on(settings, config).await;
    stop_cluster(cluster).await;
    result
}

async fn serve_on(settings: Arc<Settings>, config: Target) -> anyhow::Result<()> {
    crate::db::check_session_pooling(&config).await?;
    crate::db::migrate(&config, settings.database.accept_newer_schema).await?;
    // The dispatcher's own pool, as large as `keyward dispatch` would have:
    // besides each loop's claim and results, every send in a batch may need
    // a connection at once (a provider opt-out enters the ledger). The HTTP
    // workers get theirs in `Application::build`.
    let pool = crate::db::pool(config.clone(), settings.pool_size())?;
    let addr = settings.listen_addr();
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    for name in settings.unauthenticated_gateways() {
        // Said on stderr too, in capitals: a log line alone is easy to miss.
        let warning = format!(
            "UNAUTHENTICATED: the {name} webhook accepts unsigned requests; anyone who can reach {addr} can subscribe any number. Set gateways.{name}.secret before exposing it."
        );
        eprintln!("\n*** {warning} ***\n");
        tracing::warn!("{warning}");
    }
    let app = Application::build(settings.clone(), config, settings.pool_size(), listener)?;
    let handle = app.handle();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = settings.dispatch.workers;
    let dispatcher =
        Arc::new(Dispatcher::new(&settings, pool, app.metrics())?.with_clock(app.clock()));
    let dispatcher = tokio::spawn(dispatcher.run(workers, stopped));
    tracing::info!(%addr, "keyward is listening");
    let server = tokio::spawn(app.run_until_stopped());
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests and sends");
    handle.stop(true).await;
    let _ = stop.send(true);
    server.await??;
    let _ = dispatcher.await;
    Ok(())
}

async fn dispatch(settings: Arc<Settings>) -> anyhow::Result<()> {
    let (config, cluster) = database(&settings, Tenure::LongRunning).await?;
    let result = async {
        crate::db::check_session_pooling(&config).await?;
        crate::db::migrate(&config, settings.database.accept_newer_schema).await?;
        let pool = crate::db::pool(config, settings.pool_size())?;
        let instance = (settings.service.instance.clone())
            .unwrap_or_else(|| crate::metrics::default_instance(Some("dispatch")));
        let metrics = Arc::new(crate::metrics::Metrics::for_instance(&instance));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let workers = settings.dispatch.workers.max(1);
        let dispatcher = Arc::new(Dispatcher::new(&settings, pool, metrics)?);
        let running = tokio::spawn(dispatcher.run(workers, stopped));
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight sends");
        let _ = stop.send(true);
        let _ = running.await;
        anyhow::Ok(())
    }
    .await;
    stop_cluster(cluster).await;
    result
}

/// Runs `work` against the migrated database, then releases the private
/// cluster (stopping it only if it was started for this command).
async fn with_database<F, Fut>(settings: &Settings, work: F) -> anyhow::Result<()>
where
    F: FnOnce(deadpool_postgres::Pool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let (config, cluster) = database(settings, Tenure::Command).await?;
    let result = async {
        crate::db::migrate(&config, settings.database.accept_newer_schema).await?;
        // Two: planning a broadcast reads its audience on a second one.
        let pool = crate::db::pool(config, 2)?;
        work(pool).await
    }
    .await;
    stop_cluster(cluster).await;
    result
}

async fn token(pool: deadpool_postgres::Pool, action: TokenCommand) -> anyhow::Result<()> {
    use crate::db::support as q;
    use crate::staff::{hash_token, new_token, Role, TokenName};
    let mut client = pool.get().await.context("no database connection")?;
    match action {
        TokenCommand::Create { role, name } => {
            let name = TokenName::parse(&name).map_err(anyhow::Error::msg)?;
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let token = new_token();
            // The token and its audit row commit together, or neither does.
            let tx = client.transaction().await?;
            if !q::create_token(&tx, name.as_str(), role, &hash_token(&token)).await? {
                anyhow::bail!(
                    "an active token is named `{}`; revoke it first",
                    name.as_str()
                );
            }
            audit_cli(
                &tx,
                "token create",
                serde_json::json!({"name": name.as_str(), "role": role.as_str()}),
            )
            .await?;
            tx.commit().await?;
            eprintln!(
                "created {role} token `{}`; it is shown this once, keyward keeps only its hash:",
                name.as_str()
            );
            println!("{token}");
        }
        TokenCommand::List => {
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string())
            };
            println!(
                "{:<24} {:<8} {:<17} {:<17} REVOKED",
                "NAME", "ROLE", "CREATED", "LAST USED"
            );
            for t in q::list_tokens(&client).await? {
                println!(
                    "{:<24} {:<8} {:<17} {:<17} {}",
                    t.name,
                    t.role,
                    time(Some(t.created_at)),
                    time(t.last_used_at),
                    time(t.revoked_at)
                );
            }
        }
        TokenCommand::Revoke { name } => {
            let tx = client.transaction().await?;
            if !q::revoke_token(&tx, &name).await? {
                anyhow::bail!("no active token is named `{name}`");
            }
            audit_cli(&tx, "token revoke", serde_json::json!({"name": name})).await?;
            tx.commit().await?;
            eprintln!("revoked `{name}`");
        }
    }
    Ok(())
}

/// An `audit_log` row for a change made from the command line (actor
/// `cli`): tokens made or revoked here are on the same trail as the API's.
async fn audit_cli(
    client: &impl deadpool_postgres::GenericClient,
    command: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    crate::db::support::audit(
        client,
        &crate::db::support::AuditEntry {
            token_id: None,
            actor: "cli",
            method: "CLI",
            endpoint: command,
            msisdn: None,
            status: Some(200),
            detail: Some(detail),
        },
    )
    .await
    .context("cannot write the audit row; nothing was changed")
}

async fn subscriber_show(
    pool: deadpool_postgres::Pool,
    settings: Arc<Settings>,
    number: String,
    limit: u32,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let region = settings.service.region;
    let msisdn = crate::msisdn::Msisdn::parse(&number, region)
        // The input stays out of the message: errors are logged.
        .map_err(|_| anyhow::anyhow!("not a phone number; try 0812-3456-7890 or +6281234567890"))?;
    let client = pool.get().await.context("no database connection")?;
    let limit = i64::from(limit.clamp(1, 10_000));
    let found = crate::db::support::subscriber(&client, msisdn.as_str(), limit, None).await?;
    // Local lookups are audited too, as `cli`.
    crate::db::support::audit(
        &client,
        &crate::db::support::AuditEntry {
            token_id: None,
            actor: "cli",
            method: "CLI",
            endpoint: "subscriber show",
            msisdn: Some(msisdn.as_str()),
            status: Some(if found.is_some() { 200 } else { 404 }),
            detail: None,
        },
    )
    .await?;
    let Some(subscriber) = found else {
        // No number in the message: errors are logged, and logs mask numbers.
        anyhow::bail!("this number has never been seen (no message from it, no state)");
    };
    let colour = std::io::stdout().is_terminal();
    print!(
        "{}",
        crate::staff::view::render_subscriber(&subscriber, colour)
    );
    Ok(())
}

async fn broadcast(
    pool: deadpool_postgres::Pool,
    settings: Arc<Settings>,
    action: BroadcastCommand,
) -> anyhow::Result<()> {
    use crate::db::broadcasts as q;
    let client = pool.get().await.context("no database connection")?;
    let print = |view: &crate::broadcast::View| {
        println!("{}", serde_json::to_string_pretty(view).unwrap_or_default());
    };
    match action {
        BroadcastCommand::Create { file, dry_run } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let mut request: crate::broadcast::NewBroadcast =
                serde_json::from_str(&text).context("not a broadcast (see POST /v1/broadcasts)")?;
            request.dry_run |= dry_run;
            let key = format!(
                "cli-{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()))
            );
            let programs = crate::programs::Programs::new(&settings);
            let service = Arc::new(crate::broadcast::Broadcasts::new(&settings, &programs));
            drop(client);
            let plan = service
                .create(&pool, "cli", &key, &request, chrono::Utc::now())
                .await
                .map_err(|e| match e {
                    crate::broadcast::BroadcastError::Refused {
                        message,
                        problems,
                        lint,
                    } => anyhow::anyhow!(
                        "{message}:\n{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"problems": problems, "lint": lint})
                        )
                        .unwrap_or_default()
                    ),
                    other => anyhow::Error::new(other),
                })?;
            if let Some(id) = plan.id {
                let client = pool.get().await.context("no database connection")?;
                audit_cli(&client, "broadcast create", serde_json::json!({"id": id})).await?;
            }
            println!("{}", serde_json::to_string_pretty(&plan)?);
        }
        BroadcastCommand::List => {
            println!(
                "{:>6} {:<16} {:<9} {:<9} {:>9} {:>9} {:>9}  CREATED",
                "ID", "PROGRAM", "KIND", "STATUS", "RECIPIENTS", "SENT", "SKIPPED"
            );
            for row in q::list(&client, None, 200).await? {
                let progress = q::progress(&client, row.id).await?;
                let v = crate::broadcast::view_of(row, progress);
                let sent: i64 = v
                    .by_status
                    .iter()
                    .filter(|(s, _)| !matches!(s.as_str(), "planned" | "skipped" | "sending"))
                    .map(|(_, n)| n)
                    .sum();
                println!(
                    "{:>6} {:<16} {:<9} {:<9} {:>9} {:>9} {:>9}  {}",
                    v.id,
                    crate::telemetry::clip(&v.program, 16),
                    v.kind,
                    v.status,
                    v.recipients,
                    sent,
                    v.skipped.values().sum::<i64>(),
                    v.created_at.format("%Y-%m-%d %H:%M")
                );
            }
        }
        BroadcastCommand::Show { id, follow } => {
            use std::io::IsTerminal;
            let view = crate::broadcast::view(&client, id).await?;
            if !(follow && std::io::stderr().is_terminal()) {
                print(&view);
                return Ok(());
            }
            let bar = indicatif::ProgressBar::new(view.recipients.max(0) as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} decided · {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            loop {
                let started = std::time::Instant::now();
                let view = crate::broadcast::view(&client, id).await?;
                // Counting a million recipients takes PostgreSQL about a
                // second: a watcher costs it at most a fifth of one core.
                let pause = Duration::from_secs(1).max(started.elapsed() * 4);
                let open = |s: &str| view.by_status.get(s).copied().unwrap_or(0);
                let left = open("planned") + open("sending") + open("queued");
                bar.set_position((view.recipients - left).max(0) as u64);
                bar.set_message(format!(
                    "{} sent, {} skipped, {} waiting ({})",
                    open("sent") + open("delivered") + open("undelivered"),
                    view.skipped.values().sum::<i64>(),
                    left,
                    view.status
                ));
                if left == 0 || view.status == "cancelled" {
                    bar.finish();
                    print(&view);
                    return Ok(());
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = tokio::signal::ctrl_c() => { bar.abandon(); return Ok(()); }
                }
            }
        }
        BroadcastCommand::Pause { id }
        | BroadcastCommand::Resume { id }
        | BroadcastCommand::Cancel { id } => {
            let (to, what) = match action {
                BroadcastCommand::Pause { .. } => ("paused", "broadcast pause"),
                BroadcastCommand::Resume { .. } => ("active", "broadcast resume"),
                _ => ("cancelled", "broadcast cancel"),
            };
            match q::set_status(&client, id, to).await? {
                None => anyhow::bail!("no broadcast {id}"),
                Some(false) => {
                    let view = crate::broadcast::view(&client, id).await?;
                    if view.status != to {
                        anyhow::bail!("broadcast {id} is {}; it cannot become {to}", view.status);
                    }
                }
                Some(true) => {
                    audit_cli(&client, what, serde_json::json!({"id": id})).await?;
                }
            }
            print(&crate::broadcast::view(&client, id).await?);
        }
    }
    Ok(())
}

/// Lets go of the private cluster; its owner stops it once no other
/// keyward process is attached.
async fn stop_cluster(cluster: Option<SharedCluster>) {
    if let Some(cluster) = cluster {
        let _ = tokio::task::spawn_blocking(move || cluster.release(Duration::from_secs(30))).await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
