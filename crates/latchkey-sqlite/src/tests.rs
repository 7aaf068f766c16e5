//! What the conformance suite cannot see: how writes are grouped, migrations from the
//! previous version, and many writers at once.

use crate::{SqliteOptions, SqliteStore};
use futures_util::FutureExt;
use latchkey_core::event::{Event, EventKind};
use latchkey_core::id::{SecretId, UserId};
use latchkey_core::rate_limit::RateLimit;
use latchkey_core::{EmailAddress, User};
use latchkey_store::conformance::{application, challenge, queued_messages, t0};
use latchkey_store::{ClientSecret, Store, StoreError};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use time::Duration;

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

async fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, &SqliteOptions::default()).await.expect("open the store")
}

/// Holds the writer inside a job until the returned sender is dropped, so that the writes
/// queued meanwhile make up the next group, together.
async fn hold_writer(store: &SqliteStore) -> std::sync::mpsc::Sender<()> {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel();
    let store = store.clone();
    tokio::spawn(async move {
        store
            .write(move |_| {
                let _ = started.send(());
                let _ = held.recv();
                Ok(())
            })
            .await
    });
    running.await.expect("the holding job runs");
    release
}

/// Polls a store call once: enough to queue its job, in call order.
fn queue<'a, T>(mut call: Pending<'a, T>) -> Pending<'a, T> {
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    assert!(matches!(call.poll_unpin(&mut cx), Poll::Pending), "a queued write waits for its group");
    call
}

fn commits(store: &SqliteStore) -> u64 {
    store.writer().wal().commits.load(Ordering::Relaxed)
}

fn secret(app: &latchkey_core::Application, byte: u8) -> ClientSecret {
    ClientSecret {
        id: SecretId::generate(t0()),
        app_id: app.id.clone(),
        hash: vec![byte; 32],
        created_at: t0(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_leaves_the_rest_of_its_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("group.db")).await;
    let taken = application("Taken");
    store.insert_application(&taken, Some(&secret(&taken, 1))).await.unwrap();
    let (first, broken, middle, last) =
        (application("First"), application("Broken"), application("Middle"), application("Last"));

    let held = commits(&store);
    let release = hold_writer(&store).await;
    let first_call = queue(store.insert_application(&first, None));
    // Writes its application, then fails on the secret's unique hash: the whole job is undone.
    let clashing = secret(&broken, 1);
    let broken_call = queue(store.insert_application(&broken, Some(&clashing)));
    let middle_call = queue(store.insert_application(&middle, None));
    let last_call = queue(store.insert_application(&last, None));
    drop(release);

    assert!(first_call.await.is_ok());
    assert!(matches!(broken_call.await, Err(StoreError::Conflict(_))));
    assert!(middle_call.await.is_ok());
    assert!(last_call.await.is_ok());
    assert_eq!(commits(&store) - held, 2, "the holding job's group, then one group for the four");

    for app in [&first, &middle, &last] {
        assert!(store.application(&app.id).await.unwrap().is_some(), "{} committed", app.name);
    }
    assert!(store.application(&broken.id).await.unwrap().is_none(), "the failed job left nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_is_rolled_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("panic.db")).await;
    let event = |subject: &str| Event::new(EventKind::TokenIssued, t0()).subject(subject);
    let (kept, lost) = (event("kept"), event("lost"));
    let release = hold_writer(&store).await;
    let kept_call = queue(Box::pin(store.insert_event(&kept)));
    let panicking = queue(Box::pin(store.write(move |c| -> latchkey_store::StoreResult<()> {
        crate::store::insert_event(c, &lost)?;
        panic!("a bug in a job");
    })));
    drop(release);
    assert!(kept_call.await.is_ok());
    assert!(matches!(panicking.await, Err(StoreError::Other(_))));
    let subjects: Vec<_> =
        store.events(None, 10).await.unwrap().into_iter().filter_map(|e| e.subject).collect();
    assert_eq!(subjects, ["kept"]);
    store.insert_event(&event("after")).await.expect("the writer goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_rate_limit_counts_nothing_while_its_neighbours_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("limits.db")).await;
    let app = application("Limited");
    store.insert_application(&app, None).await.unwrap();
    let at = t0() + Duration::seconds(10);
    let once = [RateLimit { key: "email:once".into(), window: Duration::minutes(1), limit: 1 }];
    let loose = [RateLimit { key: "email:loose".into(), window: Duration::minutes(1), limit: 5 }];
    assert_eq!(store.hit_rate_limits(&once, at).await.unwrap(), Ok(()));

    let (refused, _) = challenge(&app, "refused@example.com", at);
    let (plain, _) = challenge(&app, "plain@example.com", at);
    let (counted, _) = challenge(&app, "counted@example.com", at);
    let held = commits(&store);
    let release = hold_writer(&store).await;
    let both = [loose[0].clone(), once[0].clone()];
    let refused_call = queue(store.create_challenge(&refused, None, &both, at));
    let plain_call = queue(store.create_challenge(&plain, None, &[], at));
    let counted_call = queue(store.create_challenge(&counted, None, &loose, at));
    drop(release);

    assert!(refused_call.await.unwrap().is_err(), "over the limit");
    assert_eq!(plain_call.await.unwrap(), Ok(latchkey_store::MailFate::NoMail));
    assert_eq!(counted_call.await.unwrap(), Ok(latchkey_store::MailFate::NoMail));
    assert_eq!(commits(&store) - held, 2);

    assert!(
        store.challenge(&app.id, &refused.id).await.unwrap().is_none(),
        "the refused challenge is not written"
    );
    assert!(store.challenge(&app.id, &plain.id).await.unwrap().is_some());
    assert!(store.challenge(&app.id, &counted.id).await.unwrap().is_some());
    let counts: Vec<(String, i64)> = store
        .read(|c| {
            let mut stmt = c.prepare("SELECT key, count FROM rate_limits ORDER BY key").unwrap();
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap();
            Ok(rows.map(Result::unwrap).collect())
        })
        .unwrap();
    // The refused job hit `loose` before it was refused; that hit was undone with it.
    assert_eq!(counts, [("email:loose".to_owned(), 1), ("email:once".to_owned(), 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writes_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("many.db")).await;
    let before = commits(&store);
    let (tasks, each) = (64, 50);
    let mut running = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        running.push(tokio::spawn(async move {
            for i in 0..each {
                let event = Event::new(EventKind::TokenIssued, t0()).subject(format!("{task}-{i}"));
                store.insert_event(&event).await.expect("written");
            }
        }));
    }
    for task in running {
        task.await.unwrap();
    }
    let written: i64 =
        store.read(|c| Ok(c.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap())).unwrap();
    assert_eq!(written, tasks * each);
    let groups = commits(&store) - before;
    assert!(groups <= (tasks * each) as u64, "{groups} groups");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_starts_the_wal_over_between_groups_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restart.db");
    let store = open(&path).await;
    store
        .write(|c| {
            for i in 0..2_000 {
                crate::store::insert_event(
                    c,
                    &Event::new(EventKind::TokenIssued, t0()).subject(format!("{i}")),
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let wal = store.writer().wal();
    wal.restart.store(true, Ordering::Release);
    store.insert_event(&Event::new(EventKind::TokenIssued, t0()).subject("after")).await.unwrap();

    assert!(!wal.restart.load(Ordering::Acquire), "the writer clears the request");
    let look = rusqlite::Connection::open(&path).unwrap();
    let (in_wal, copied): (i64, i64) =
        look.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?))).unwrap();
    assert!(
        in_wal < 20,
        "only the last write is in the WAL, not the 2,000 events before it: {in_wal} frames"
    );
    assert_eq!(in_wal, copied);
    let written: i64 =
        store.read(|c| Ok(c.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap())).unwrap();
    assert_eq!(written, 2_001);
}

/// Makes a database the way the previous version did: sqlx's migrator over the first
/// `versions` migrations, which it records in `_sqlx_migrations`.
async fn migrated_by_sqlx(path: &Path, versions: usize) {
    use sqlx::{ConnectOptions, Connection};
    let files = tempfile::tempdir().unwrap();
    let mut names: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for file in names.iter().take(versions) {
        std::fs::copy(file, files.path().join(file.file_name().unwrap())).unwrap();
    }
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .connect()
        .await
        .unwrap();
    let migrator = sqlx::migrate::Migrator::new(files.path()).await.unwrap();
    migrator.run(&mut conn).await.unwrap();
    sqlx::query("INSERT INTO users (id, email, email_verified, created_at, updated_at) VALUES ('user_old', 'old@example.com', 1, 0, 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_the_previous_version_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("previous.db");
    migrated_by_sqlx(&path, 5).await;

    let store = open(&path).await;
    let old = store.user_by_email(&EmailAddress::parse("old@example.com").unwrap()).await.unwrap();
    assert_eq!(old.map(|u| u.id.to_string()).as_deref(), Some("user_old"));
    store.insert_user(&user("new@example.com")).await.unwrap();
    assert_eq!(user_version(&store), crate::migrate::latest_version());
    store.close().await;

    // Opening again finds everything applied.
    let store = open(&path).await;
    assert_eq!(store.list_users(None, 10).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_partly_migrated_by_the_previous_version_gets_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("older.db");
    migrated_by_sqlx(&path, 3).await;

    let store = open(&path).await;
    assert_eq!(user_version(&store), crate::migrate::latest_version());
    let mut with_locale = user("locale@example.com");
    with_locale.locale = Some("fr".into());
    store.insert_user(&with_locale).await.unwrap();
    let read = store.user(&with_locale.id).await.unwrap().unwrap();
    assert_eq!(read.locale.as_deref(), Some("fr"), "migration 5 was applied");
    assert!(store.list_organizations().await.unwrap().is_empty(), "migration 4 was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    let store = open(&path).await;
    store
        .write(|c| c.execute_batch("PRAGMA user_version = 99").map_err(crate::error::map_err))
        .await
        .unwrap();
    store.close().await;
    assert!(SqliteStore::open(&path, &SqliteOptions::default()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_is_unavailable_and_its_writes_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closed.db");
    let store = open(&path).await;
    let written = user("kept@example.com");
    store.insert_user(&written).await.unwrap();
    store.close().await;
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(store.insert_user(&user("late@example.com")).await, Err(StoreError::Unavailable(_))));

    let store = open(&path).await;
    assert!(store.user(&written.id).await.unwrap().is_some());
}

fn user(email: &str) -> User {
    User {
        id: UserId::generate(t0()),
        email: EmailAddress::parse(email).unwrap(),
        email_verified: false,
        name: None,
        metadata: Default::default(),
        locale: None,
        created_at: t0(),
        updated_at: t0(),
        last_sign_in_at: None,
    }
}

fn user_version(store: &SqliteStore) -> i64 {
    store.read(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap())).unwrap()
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// The database and its WAL and shared-memory files hold user data: owner only, whatever
/// the umask lets other files be.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_files_are_private_under_the_usual_umask() {
    use rustix::fs::Mode;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private.db");
    // The usual umask; other tests' files are no less readable under it than by default.
    let before = rustix::process::umask(Mode::from_raw_mode(0o022));
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "x").unwrap();
    let store = open(&path).await;
    rustix::process::umask(before);
    assert_eq!(mode_of(&plain), 0o644, "under this umask a new file is readable by all");

    store.insert_user(&user("private@example.com")).await.unwrap();
    for file in [path.clone(), with_suffix(&path, "-wal"), with_suffix(&path, "-shm")] {
        assert!(file.exists(), "{} exists while the store is open", file.display());
        assert_eq!(mode_of(&file), 0o600, "{}", file.display());
    }
    store.close().await;
}

/// A database made by an earlier version, readable by all, is made private when opened.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_readable_database_is_made_private_on_open() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let store = open(&path).await;
    store.insert_user(&user("old@example.com")).await.unwrap();
    let files = [path.clone(), with_suffix(&path, "-wal"), with_suffix(&path, "-shm")];
    for file in &files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let again = open(&path).await;
    for file in &files {
        assert_eq!(mode_of(file), 0o600, "{}", file.display());
    }
    again.close().await;
    store.close().await;
}

/// One server per database file: a server that starts takes back every lease it finds, all
/// of them left by its past run (killed while delivering), and the messages go out at once
/// instead of when their leases lapse. Sent messages stay sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_server_takes_back_the_leases_its_past_run_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    let store = open(&path).await;
    let ids = queued_messages(&store, 3).await;
    let claimed = store.claim_outbox(t0(), t0() + Duration::minutes(2), 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    store.outbox_sent(&[latchkey_store::SentMail::direct(&ids[0])], t0()).await.unwrap();
    // Killed here, with one message in hand; started again.
    store.close().await;
    let store = open(&path).await;
    let later = t0() + Duration::seconds(1);
    assert_eq!(
        store.claim_outbox(later, later + Duration::minutes(2), 10).await.unwrap().len(),
        1,
        "the free one only"
    );
    assert_eq!(store.release_leftover_outbox_leases().await.unwrap(), 2, "every live lease");
    let again: Vec<_> = store
        .claim_outbox(later, later + Duration::minutes(2), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(again, ids[1..].to_vec(), "the message in hand at the crash, at once");
    store.close().await;
}
