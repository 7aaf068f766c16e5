use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use latchkey::run::{StartOptions, open_core, service_for, start};
use latchkey::{Config, config::redact_url};
use latchkey_core::{Clock, SystemClock};
use latchkey_server::native::ApplicationBody;
use latchkey_service::NewApplication;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

/// Passwordless e-mail sign-in: magic links, one-time codes, OpenID Connect tokens.
#[derive(Parser)]
#[command(name = "latchkey", version)]
struct Cli {
    /// A TOML configuration file; environment variables and flags override it.
    #[arg(long, global = true, env = "LATCHKEY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Copy the SQLite database to a new file, consistent, while the server runs (keep the
    /// master secret too: without it the copy's signing keys cannot be read).
    Backup {
        /// The file to write; it must not exist yet.
        path: PathBuf,
    },
    /// Copy every row of the SQLite database into an empty PostgreSQL database (migrated
    /// first), in one transaction. Stop the server first: what it writes meanwhile is not copied.
    /// The PostgreSQL servers need the same master secret (LATCHKEY_SECRET_KEY).
    MigrateData {
        /// The PostgreSQL database to fill: postgres://…
        #[arg(long)]
        to: String,
    },
    /// Manage applications.
    #[command(subcommand)]
    App(AppCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check e-mail delivery.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Exit 0 if the server at the configured address answers /healthz.
    Healthcheck {
        /// Base URL of the server; default: the public URL, else the listen address.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long)]
    listen: Option<String>,
    #[arg(long)]
    public_url: Option<String>,
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long)]
    smtp_url: Option<String>,
    /// Development mode: generate and print an admin token, create a demo application.
    #[arg(long)]
    dev: bool,
}

#[derive(Subcommand)]
enum MailCommand {
    /// Print the SPF, DKIM and DMARC records to publish for the sender domains: the default
    /// sender's (LATCHKEY_MAIL_FROM) and every application's own sender address.
    Dns,
    /// Send a test message through the configured SMTP server and report how the SMTP
    /// conversation ended: the server's reply, or the error. Exits 1 on failure.
    Test {
        /// The recipient.
        #[arg(long)]
        to: String,
        /// Use this SMTP URL instead of the configured one.
        #[arg(long)]
        smtp_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Retire the current signing key of an algorithm and sign with a new one. The retired key
    /// stays in the key set until every token it signed has expired.
    Rotate {
        #[arg(long, default_value = "ES256")]
        alg: String,
    },
}

#[derive(Subcommand)]
enum AppCommand {
    /// Create an application and print its client id and secret.
    Create {
        #[arg(long)]
        name: String,
        /// An allowed redirect URI (repeat for several); the first is the default.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// A public client: no secret, PKCE required.
        #[arg(long)]
        public: bool,
        #[arg(long)]
        json: bool,
    },
    /// List applications.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// Directives added to every filter, whatever `LATCHKEY_LOG` asks for: the mail library's
/// `tracing` feature is off, because at `debug` it logs each SMTP line, that is every message
/// with its live link and code, and the credentials; should a dependency turn it back on,
/// this keeps those lines out.
const NEVER_VERBOSE: &[&str] = &["lettre=warn"];

fn init_tracing(config: &Config) {
    let mut filter = EnvFilter::try_from_env("LATCHKEY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    for directive in NEVER_VERBOSE {
        filter = filter.add_directive(directive.parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    if let Command::Serve(args) = &cli.command {
        if let Some(v) = &args.listen {
            config.listen = v.clone();
        }
        if let Some(v) = &args.public_url {
            config.public_url = Some(v.clone());
        }
        if let Some(v) = &args.database_url {
            config.database_url = v.clone();
        }
        if let Some(v) = &args.smtp_url {
            config.smtp_url = Some(v.clone());
        }
    }
    init_tracing(&config);
    match cli.command {
        Command::Serve(args) => serve(config, args.dev).await,
        Command::Migrate => {
            open_core(&config, &SystemClock).await?;
            println!("migrations applied to {}", redact_url(&config.database_url));
            Ok(())
        }
        Command::Backup { path } => {
            let from = latchkey::backup(&config.database_url, &path)?;
            println!("{} copied to {}", from.display(), path.display());
            Ok(())
        }
        Command::MigrateData { to } => {
            let copied = latchkey::migrate_data(&config, &to).await?;
            for (table, rows) in &copied {
                println!("{table}: {rows} rows");
            }
            let total: u64 = copied.iter().map(|(_, rows)| rows).sum();
            println!("{total} rows copied from {} to {}", redact_url(&config.database_url), redact_url(&to));
            println!(
                "Start the servers on PostgreSQL with the same master secret as before (LATCHKEY_SECRET_KEY: the \
                 contents of the .secret file beside the SQLite database, unless you set it yourself)."
            );
            Ok(())
        }
        Command::App(cmd) => app(config, cmd).await,
        Command::Keys(KeysCommand::Rotate { alg }) => {
            let alg = latchkey_core::signing::SigningAlg::parse(&alg)
                .with_context(|| format!("unknown algorithm {alg:?}: use ES256, RS256 or EdDSA"))?;
            let service = offline_service(&config).await?;
            let kid = service.rotate_signing_key(alg).await.map_err(refused)?;
            println!(
                "{} now signs with key {kid}; running servers pick it up within 30 seconds",
                alg.as_str()
            );
            Ok(())
        }
        Command::Mail(MailCommand::Dns) => mail_dns(&config).await,
        Command::Mail(MailCommand::Test { to, smtp_url }) => {
            if smtp_url.is_some() {
                config.smtp_url = smtp_url;
            }
            mail_test(&config, &to).await
        }
        Command::Healthcheck { url } => healthcheck(&config, url),
    }
}

async fn serve(config: Config, dev: bool) -> anyhow::Result<()> {
    let running = start(config.clone(), StartOptions { dev, ..StartOptions::default() }).await?;
    let url = running.public_url.trim_end_matches('/').to_owned();
    println!("Latchkey is listening on {} (database: {})", running.addr, redact_url(&config.database_url));
    if running.dev_mailbox.is_some() {
        println!("No SMTP configured: e-mails go to the development mailbox, {url}/dev/mailbox");
    }
    if dev {
        match &running.admin_token {
            Some(token) if running.admin_token_generated => println!("Admin token: {token}"),
            Some(_) => println!("Admin token: the configured one (LATCHKEY_ADMIN_TOKEN)"),
            None => {}
        }
        if let Some(app) = &running.demo_app {
            println!("Demo application: {app}");
        }
        println!("Try a sign-in: open {url}/dev");
    }
    running.run_until_signal(std::time::Duration::from_millis(config.shutdown_grace_ms)).await;
    Ok(())
}

/// Whether the records of the default sender's domain are published, when DNS answers.
async fn report_dns(config: &Config, dkim: &latchkey_mail::DkimSigner) {
    use latchkey::mail_dns::{is_published, lookup_txt, records, system_dns_server};
    let domains: Vec<String> = latchkey_mail::sender_domain(&config.mail_from).into_iter().collect();
    let server = match &config.dns_server {
        Some(at) => at.parse().ok(),
        None => system_dns_server(),
    };
    let Some(server) = server else {
        println!(
            "DNS: no DNS server to ask (LATCHKEY_DNS_SERVER, /etc/resolv.conf): cannot say whether the records are published"
        );
        return;
    };
    let wanted = records(&domains, config.smtp_url.as_deref(), dkim);
    let answers = tokio::task::spawn_blocking(move || {
        wanted
            .into_iter()
            .map(|r| {
                let found = lookup_txt(server, &r.name, std::time::Duration::from_secs(2));
                (r, found)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (record, found) in answers {
        match found {
            Ok(found) if is_published(&record, &found) => {
                println!("DNS: {} record of {}: published", record.purpose, record.name)
            }
            Ok(_) => println!(
                "DNS: {} record of {}: NOT published (see `latchkey mail dns`)",
                record.purpose, record.name
            ),
            Err(e) => {
                println!("DNS: not reachable ({e}): cannot say whether the records are published");
                return;
            }
        }
    }
}

/// `latchkey mail dns`: the records of every sender domain, as zone-file lines.
async fn mail_dns(config: &Config) -> anyhow::Result<()> {
    let core = open_core(config, &SystemClock).await?;
    let dkim = latchkey::dkim::signer(config, &*core.store, &core.key, &SystemClock).await?;
    let apps = core.store.list_applications().await.context("cannot list the applications")?;
    let domains = latchkey::mail_dns::sender_domains(&config.mail_from, &apps);
    println!("; Publish these TXT records in the zone of each sender domain.");
    println!("; SPF allows the relay to send for the domain (if it documents an include:, use that);");
    println!(
        "; DKIM is the public key of the signatures (selector {:?}, {});",
        dkim.selector(),
        dkim.algorithm().as_str()
    );
    println!("; DMARC starts at p=none: move to quarantine once the reports show only your mail.");
    for record in latchkey::mail_dns::records(&domains, config.smtp_url.as_deref(), &dkim) {
        println!("; {}", record.purpose);
        println!("{}", latchkey::mail_dns::zone_line(&record));
    }
    Ok(())
}

/// `latchkey mail test`: one message through the configured SMTP server, and its outcome.
async fn mail_test(config: &Config, to: &str) -> anyhow::Result<()> {
    let to = latchkey_core::EmailAddress::parse(to)
        .map_err(|_| anyhow::anyhow!("{to:?} is not an e-mail address"))?;
    const NO_SMTP: &str =
        "no SMTP server is configured (LATCHKEY_SMTP_URL): mail goes to the development mailbox";
    // Checked before the database is opened for the DKIM key.
    if config.smtp_url.is_none() {
        anyhow::bail!(NO_SMTP);
    }
    let core = open_core(config, &SystemClock).await?;
    let dkim = Arc::new(latchkey::dkim::signer(config, &*core.store, &core.key, &SystemClock).await?);
    let mailer = latchkey::run::smtp_mailer(config, Some(dkim.clone()))?.context(NO_SMTP)?;
    let public = config.public_url.clone().unwrap_or_else(|| format!("http://{}", config.listen));
    let host = url::Url::parse(&public).ok().and_then(|u| u.host_str().map(str::to_owned));
    let message_id = format!(
        "{}@{}",
        latchkey_core::id::OutboxId::generate(time::OffsetDateTime::now_utc()),
        host.as_deref().unwrap_or("localhost")
    );
    let email = latchkey_mail::Email {
        from: config.mail_from.clone(),
        to: to.as_str().to_owned(),
        subject: "Latchkey test message".into(),
        text: format!(
            "This is a test message from the Latchkey server at {public}.\n\n\
             If you can read it, its e-mail reaches this mailbox.\n"
        ),
        html: format!(
            "<!doctype html><html lang=\"en\"><body><p>This is a test message from the Latchkey server at \
             {public}.</p><p>If you can read it, its e-mail reaches this mailbox.</p></body></html>"
        ),
        message_id: message_id.clone(),
    };
    println!("Sending a test message from {} to {to}", config.mail_from);
    println!("through {}", mailer.describe());
    let sent = mailer.send(&email).await;
    report_dns(config, &dkim).await;
    match sent {
        Ok(reply) => {
            println!("Accepted by the SMTP server: {reply}");
            println!("Message-ID: <{message_id}>");
            Ok(())
        }
        Err(e) => {
            let what = if e.permanent {
                "the message was refused for good"
            } else {
                "the message was not sent (a temporary failure: the outbox would retry it)"
            };
            anyhow::bail!("{what}: {}", e.message)
        }
    }
}

/// The service without a listener, for commands that manage data.
async fn offline_service(config: &Config) -> anyhow::Result<latchkey_service::Service> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let core = open_core(config, &*clock).await?;
    let public = config.public_url.clone().unwrap_or_else(|| format!("http://{}", config.listen));
    let public = url::Url::parse(&public).context("LATCHKEY_PUBLIC_URL is not a valid URL")?;
    Ok(service_for(config, core, public, clock, Default::default()))
}

async fn app(config: Config, cmd: AppCommand) -> anyhow::Result<()> {
    let service = offline_service(&config).await?;
    match cmd {
        AppCommand::Create { name, redirect_uris, public, json } => {
            let body = ApplicationBody {
                name,
                default_redirect_uri: redirect_uris.first().cloned(),
                redirect_uris,
                public,
                ..ApplicationBody::default()
            };
            let cmd = NewApplication::try_from(body).map_err(|e| anyhow::anyhow!("{e}"))?;
            let created = service.create_application(cmd).await.map_err(refused)?;
            if json {
                let body = latchkey_server::native::created_application_json(&created);
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                println!("client_id:     {}", created.application.client_id);
                match &created.client_secret {
                    Some(secret) => println!("client_secret: {secret}\n(shown once: store it now)"),
                    None => println!("public client: no secret; use PKCE"),
                }
            }
        }
        AppCommand::List { json } => {
            let apps = service.list_applications().await.map_err(refused)?;
            if json {
                let data: Vec<_> =
                    apps.iter().map(|a| latchkey_server::native::application_json(a, &[])).collect();
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                for a in apps {
                    let uris: Vec<&str> = a.redirect_uris.iter().map(|u| u.as_str()).collect();
                    println!("{}  {}  {}", a.client_id, a.name, uris.join(" "));
                }
            }
        }
    }
    Ok(())
}

/// A plain HTTP/1.1 GET of `/healthz`, so the command needs no HTTP client library.
fn healthcheck(config: &Config, url: Option<String>) -> anyhow::Result<()> {
    let base = url.or(config.public_url.clone()).unwrap_or_else(|| format!("http://{}", config.listen));
    let parsed = url::Url::parse(&base).context("invalid URL")?;
    anyhow::ensure!(
        parsed.scheme() == "http",
        "healthcheck speaks plain HTTP; give the internal address with --url"
    );
    let host = parsed.host_str().context("the URL has no host")?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let mut stream =
        std::net::TcpStream::connect((host, port)).with_context(|| format!("cannot connect to {base}"))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).unwrap_or_default();
    anyhow::ensure!(status == "200", "unhealthy: /healthz answered {status:?}");
    println!("healthy");
    Ok(())
}

/// A service refusal as the command line says it: which field, and why.
fn refused(e: latchkey_service::ServiceError) -> anyhow::Error {
    match e {
        latchkey_service::ServiceError::Refused(latchkey_service::Refusal::Invalid { field, reason }) => {
            anyhow::anyhow!("{field}: {reason}")
        }
        other => anyhow::anyhow!("{other}"),
    }
}
