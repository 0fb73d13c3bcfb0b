//! Schedules and completion over two real Dovecot servers: delta passes
//! fired by cron on their own, fires skipped while a pass runs, catch-up
//! after downtime, and a batch completed by a final delta pass.

use std::time::Duration;

use ferry_tests::delayproxy::Link;
use ferry_tests::mailcmp;
use ferry_tests::pair::{Pair, contents, count, login};
use ferry_tests::sample::{self, SampleSpec};
use ferry_testservers::Dovecot;

async fn add_mail(d: &Dovecot, user: &str, seed: u64, messages: usize) {
    let mut s = login(d, user).await;
    sample::fill(
        &mut s,
        &SampleSpec {
            seed,
            messages,
            attachment_percent: 5,
            huge: 0,
        },
    )
    .await
    .unwrap();
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A field of an event record's event (`{"Type": {fields}}` in JSON).
fn field<'a>(e: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &e["event"][e["event_type"].as_str().unwrap()][name]
}

fn due(e: &serde_json::Value) -> i64 {
    field(e, "due_us").as_i64().expect("due_us")
}

fn time_us(e: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap())
        .unwrap()
        .timestamp_micros()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_batch_runs_its_own_delta_passes() {
    let p = Pair::start("wave", &["anna"], None);
    add_mail(&p.src, "anna", 1, 30).await;
    p.ferry.run_pass("wave", "full");
    assert_eq!(count(&contents(&p.dst, "anna").await), 30);

    p.ferry
        .ctl_ok(&["batch", "schedule", "wave", "--delta", "*/2 * * * * *"]);
    // Mail that arrives between passes is copied by the next fire.
    add_mail(&p.src, "anna", 2, 5).await;
    let dst = &p.dst;
    let mut copied = 0;
    for _ in 0..600 {
        copied = count(&contents(dst, "anna").await);
        if copied >= 35 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(copied, 35, "the scheduled delta copied the new mail");
    add_mail(&p.src, "anna", 3, 3).await;
    for _ in 0..600 {
        copied = count(&contents(dst, "anna").await);
        if copied >= 38 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(copied, 38, "and the next one too");

    // Each fire is an event, recorded with the delta pass it asked for.
    let events = p.ferry.events();
    let fired: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event_type"] == "ScheduleFired")
        .map(|(i, _)| i)
        .collect();
    assert!(fired.len() >= 2, "{} fires", fired.len());
    for i in &fired {
        let next = &events[i + 1];
        assert_eq!(next["event_type"], "PassRequested");
        assert_eq!(field(next, "pass"), "Delta");
        assert_eq!(events[*i]["actor"], "scheduler", "{}", events[*i]);
        assert_eq!(due(&events[*i]) % 2_000_000, 0, "fires on even seconds");
    }
    let deltas = p.ferry.events_of("PassStarted");
    assert!(
        deltas
            .iter()
            .filter(|e| field(e, "pass") == "Delta")
            .count()
            >= 2
    );

    // Removed, it fires no more.
    p.ferry
        .ctl_ok(&["batch", "schedule", "wave", "--delta", "off"]);
    let before = p.ferry.events_of("ScheduleFired").len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(p.ferry.events_of("ScheduleFired").len(), before);

    p.ferry
        .ctl_ok(&["batch", "wait", "wave", "--timeout", "60"]);
    let src = contents(&p.src, "anna").await;
    assert_eq!(
        mailcmp::diff(&src, &contents(dst, "anna").await),
        Vec::<String>::new()
    );
    // No duplicate: exactly one copy event per source item.
    assert_eq!(p.ferry.events_of("ItemCopied").len(), 38);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_while_a_pass_runs_is_skipped_not_queued() {
    // The source sits behind a 100 ms link, so that the full pass outlasts
    // the schedule's first fire on any machine: on loopback alone a fast
    // machine finished it before the first second ticked.
    let p = Pair::start_over("wave", &["anna", "bert"], Link::rtt_ms(100));
    add_mail(&p.src, "anna", 4, 400).await;
    add_mail(&p.src, "bert", 5, 400).await;
    p.ferry
        .ctl_ok(&["batch", "start", "wave", "--pass", "full"]);
    p.ferry.wait_for(30, "the full pass to start", |f| {
        !f.events_of("PassStarted").is_empty()
    });
    p.ferry
        .ctl_ok(&["batch", "schedule", "wave", "--delta", "* * * * * *"]);
    p.ferry.wait_for(120, "a skipped fire", |f| {
        !f.events_of("ScheduleSkipped").is_empty()
    });
    let skipped = p.ferry.events_of("ScheduleSkipped");
    assert!(
        field(&skipped[0], "reason")
            .as_str()
            .unwrap()
            .contains("a full pass is still running"),
        "{}",
        skipped[0]
    );
    // Skipped fires were not queued: once the full pass ends, at most one
    // delta pass waits or runs at a time.
    p.ferry
        .ctl_ok(&["batch", "schedule", "wave", "--delta", "off"]);
    p.ferry
        .ctl_ok(&["batch", "wait", "wave", "--timeout", "300"]);
    let requested = p.ferry.events_of("PassRequested");
    let fired = p.ferry.events_of("ScheduleFired");
    assert_eq!(requested.len(), 1 + fired.len());
    let b = p.ferry.ctl_json(&["batch", "show", "wave"]);
    assert!(b["data"]["pending"].as_array().unwrap().is_empty(), "{b}");
    assert!(
        b["data"]["schedule"].is_null(),
        "schedule removed: {}",
        b["data"]["schedule"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fires_missed_while_down_run_once_within_the_deadline() {
    let mut p = Pair::start(
        "wave",
        &["anna"],
        Some("[engine]\nschedule_catch_up_s = 4\n"),
    );
    add_mail(&p.src, "anna", 6, 10).await;
    p.ferry.run_pass("wave", "full");
    // Fires at ten seconds that all fall while ferryd is down, so that no
    // pass runs when it stops.
    let s0 = now_us() / 1_000_000;
    let seconds: Vec<String> = (3..13).map(|k| ((s0 + k) % 60).to_string()).collect();
    let expr = format!("{} * * * * *", seconds.join(","));
    p.ferry
        .ctl_ok(&["batch", "schedule", "wave", "--delta", &expr]);
    p.ferry.stop();
    let down = now_us();
    assert!(down < (s0 + 3) * 1_000_000, "ferryd took too long to stop");
    add_mail(&p.src, "anna", 7, 4).await;
    std::thread::sleep(Duration::from_micros(
        ((s0 + 14) * 1_000_000 - now_us()) as u64,
    ));
    let up = now_us();
    p.ferry.launch();
    p.ferry.wait_for(30, "the catch-up fire", |f| {
        f.events_of("ScheduleFired")
            .iter()
            .any(|e| (down..up).contains(&due(e)))
    });
    let in_downtime = |kind: &str| -> Vec<i64> {
        p.ferry
            .events_of(kind)
            .iter()
            .map(due)
            .filter(|d| (down..up).contains(d))
            .collect()
    };
    let fired = in_downtime("ScheduleFired");
    let missed = in_downtime("ScheduleMissed");
    let skipped = in_downtime("ScheduleSkipped");
    assert_eq!(fired.len(), 1, "one catch-up run for the whole outage");
    assert_eq!(fired[0], (s0 + 12) * 1_000_000, "the latest fire runs");
    assert!(missed.len() >= 4, "{missed:?}");
    // Missed ones are those older than the deadline when ferryd came back.
    assert!(missed.iter().all(|m| *m < fired[0]), "{missed:?} {fired:?}");
    assert!(
        missed.iter().all(|m| up - m > 4_000_000 - 1_500_000),
        "{missed:?}"
    );
    assert!(!skipped.is_empty(), "recent fires folded into the catch-up");
    // Every fire of the outage is accounted for exactly once.
    let mut all: Vec<i64> = [fired, missed, skipped].concat();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "a fire was recorded twice");
    assert_eq!(n, 10, "every fire of the outage is recorded");
    p.ferry
        .ctl_ok(&["batch", "schedule", "wave", "--delta", "off"]);
    p.ferry
        .ctl_ok(&["batch", "wait", "wave", "--timeout", "60"]);
    assert_eq!(count(&contents(&p.dst, "anna").await), 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_runs_a_final_delta_then_the_batch_is_completed() {
    let p = Pair::start("wave", &["anna"], None);
    add_mail(&p.src, "anna", 8, 12).await;
    p.ferry.run_pass("wave", "full");
    add_mail(&p.src, "anna", 9, 3).await;
    // CompleteAfter: nothing happens before the time.
    p.ferry.ctl_ok(&["batch", "complete", "wave", "--at", "3s"]);
    let b = p.ferry.ctl_json(&["batch", "show", "wave"]);
    assert_eq!(b["data"]["state"], "Synced");
    assert_eq!(b["data"]["pending"][0]["purpose"], "Completion");
    let why = p.ferry.ctl_err(&["batch", "complete", "wave"]);
    assert!(why.contains("completion is already requested"), "{why}");
    p.ferry.wait_for(60, "completion", |f| {
        f.ctl_json(&["batch", "show", "wave"])["data"]["state"] == "Completed"
    });
    assert_eq!(count(&contents(&p.dst, "anna").await), 15);
    let done = p.ferry.events_of("BatchCompleted");
    assert_eq!(done.len(), 1);
    assert_eq!(field(&done[0], "with_errors"), false);
    let started = p.ferry.events_of("PassStarted");
    let last = started.last().unwrap();
    assert_eq!(field(last, "pass"), "Delta");
    let requested = p.ferry.events_of("CompletionRequested");
    assert_eq!(field(last, "pass_id"), &requested[0]["seq"]);
    assert!(time_us(last) >= field(&requested[0], "not_before_us").as_i64().unwrap());

    // Statistics per batch and mailbox, per pass.
    let b = &p.ferry.ctl_json(&["batch", "show", "wave"])["data"];
    assert_eq!(b["totals"]["copied"], 15);
    assert_eq!(b["lag"], 0);
    let passes = b["passes"].as_array().unwrap();
    assert_eq!(passes.len(), 2);
    assert_eq!(passes[0]["counts"]["copied"], 12);
    assert_eq!(passes[1]["counts"]["copied"], 3);
    assert_eq!(passes[1]["purpose"], "Completion");
    assert!(passes[1]["counts"]["bytes"].as_u64().unwrap() > 0);
    let m = &b["mailbox_stats"][0];
    assert_eq!(m["address"], "anna@old.example");
    assert_eq!(m["state"], "Synced");
    assert_eq!(m["totals"]["copied"], 15);
    assert_eq!(m["passes_run"], 2);
    assert_eq!(m["last_pass"]["counts"]["copied"], 3);
    assert!(m["last_delta_us"].as_i64().is_some());
    let table = p.ferry.ctl_ok(&["batch", "show", "wave"]);
    for needle in [
        "copied 15",
        "lag 0 items",
        "delta (completion)",
        "anna@old.example",
    ] {
        assert!(table.contains(needle), "{needle:?} in {table}");
    }

    let why = p
        .ferry
        .ctl_err(&["batch", "start", "wave", "--pass", "delta"]);
    assert!(why.contains("batch wave is Completed"), "{why}");
    // A completed batch no longer holds its mailboxes.
    p.ferry.create_batch("again", "old", "new", &["anna"], &[]);
}

/// A daemon's app on a temporary directory with batch `b` holding one
/// mailbox, not running its engine.
async fn app_with_batch(
    dir: &std::path::Path,
) -> (std::sync::Arc<ferryd::App>, ferry_events::Actor) {
    use ferry_events::{Actor, BatchOptions, Event, ExpectedVersion, stream};
    let config = ferryd::config::Config::for_dir(dir, &dir.join("ferryd.sock"));
    let app = std::sync::Arc::new(ferryd::App::open(config).unwrap());
    let admin = Actor::User {
        uid: 1000,
        name: "admin".into(),
    };
    app.append(
        &stream::batch("b"),
        ExpectedVersion::NoStream,
        admin.clone(),
        vec![
            Event::BatchCreated {
                name: "b".into(),
                source: "old".into(),
                destination: "new".into(),
                options: BatchOptions::default(),
            },
            added("ann"),
        ],
    )
    .await
    .unwrap();
    (app, admin)
}

/// What batch `b`'s stream holds after its version `fired`.
fn after_fire(app: &ferryd::App, fired: u64) -> Vec<ferry_events::Envelope> {
    app.store
        .read_stream(&ferry_events::stream::batch("b"), fired + 1)
        .unwrap()
}

/// `USER@old.example` joins batch `b`, bound for `USER@new.example`.
fn added(user: &str) -> ferry_events::Event {
    ferry_events::Event::MailboxAdded {
        batch: "b".into(),
        mailbox: ferry_events::MailboxSpec {
            address: format!("{user}@old.example"),
            destination_address: format!("{user}@new.example"),
            source_login: None,
            source_secret: None,
            destination_login: None,
            destination_secret: None,
        },
    }
}

/// Appends a fire to batch `b` in the store without folding it into the
/// views, as the scheduler of another worker in a fleet does; its version.
async fn fire_unseen(app: &ferryd::App) -> u64 {
    use ferry_events::{Actor, Event, ExpectedVersion, stream};
    let fired = app
        .store
        .append(
            &stream::batch("b"),
            ExpectedVersion::Any,
            Actor::Daemon,
            vec![Event::ScheduleFired {
                batch: "b".into(),
                due_us: now_us(),
            }],
        )
        .await
        .unwrap();
    fired[0].stream_version
}

/// An event the engine or the scheduler appended to the batch while the
/// views had not yet folded it (another worker's, in a fleet) is no
/// conflict for an administrator's command that named no version: the
/// command is decided again on fresh views and recorded.
#[tokio::test]
async fn a_command_racing_the_schedulers_own_write_is_decided_again_not_refused() {
    use ferry_events::{Event, stream};
    let dir = tempfile::tempdir().unwrap();
    let (app, admin) = app_with_batch(dir.path()).await;
    ferryd::api::batch::schedule(&app, admin.clone(), "b", "0 3 * * *", None)
        .await
        .unwrap();
    let fired = fire_unseen(&app).await;
    ferryd::api::batch::schedule(&app, admin.clone(), "b", "off", None)
        .await
        .expect("the schedule is removed despite the fire");
    let last = after_fire(&app, fired);
    assert!(
        matches!(&last[..], [e] if matches!(&e.event, Event::ScheduleSet { cron, .. } if cron.is_empty())),
        "the removal follows the fire: {last:?}"
    );
    assert!(app.views.read().unwrap().batches["b"].schedule.is_none());

    // Editing a user, and removing one, likewise.
    let fired = fire_unseen(&app).await;
    let req = ferry_api::wire::MailboxSetCredentials {
        address: "ann@old.example".into(),
        source_login: Some("ann.src".into()),
        source_password: Some("n3w-pass".into()),
        destination_login: None,
        destination_password: None,
    };
    ferryd::api::users::set_credentials(&app, admin.clone(), req)
        .await
        .expect("the credentials are replaced despite the fire");
    let last = after_fire(&app, fired);
    assert!(
        matches!(&last[..], [e] if matches!(&e.event, Event::MailboxUpdated { mailbox, .. } if mailbox.source_login.as_deref() == Some("ann.src") && mailbox.source_secret.is_some())),
        "the edit follows the fire: {last:?}"
    );
    app.append(
        &stream::batch("b"),
        ferry_events::ExpectedVersion::Any,
        admin.clone(),
        vec![added("bob")],
    )
    .await
    .unwrap();
    let fired = fire_unseen(&app).await;
    ferryd::api::users::remove(&app, admin.clone(), "b", "bob@old.example")
        .await
        .expect("the user is removed despite the fire");
    let last = after_fire(&app, fired);
    assert!(
        matches!(&last[..], [e] if matches!(&e.event, Event::MailboxRemoved { address, .. } if address == "bob@old.example")),
        "the removal follows the fire: {last:?}"
    );

    // A cutover likewise.
    let fired = fire_unseen(&app).await;
    ferryd::api::cutover::cutover(&app, admin, vec!["ann@old.example".into()], true)
        .await
        .expect("the cutover is recorded despite the fire");
    let last = after_fire(&app, fired);
    assert!(
        matches!(&last[..], [e] if matches!(&e.event, Event::CutoverRequested { mailboxes, forced: true, .. } if mailboxes == &["ann@old.example".to_string()])),
        "the cutover follows the fire: {last:?}"
    );
}

/// An edit of an endpoint that another worker made, and that this worker's
/// views had not folded yet, is built upon by the next edit here, not
/// overwritten with what the views held.
#[tokio::test]
async fn an_endpoint_edit_keeps_another_workers_unseen_edit() {
    use ferry_api::wire::{EndpointAdd, EndpointUpdate};
    use ferry_events::{Event, ExpectedVersion, stream};
    let dir = tempfile::tempdir().unwrap();
    let (app, admin) = app_with_batch(dir.path()).await;
    // As ferryctl sends them: what is not given is left out.
    let add: EndpointAdd = serde_json::from_value(serde_json::json!({
        "name": "old", "kind": "Imap", "host": "127.0.0.1", "port": 993, "tls": "Tls",
        "max_connections": 20,
    }))
    .unwrap();
    ferryd::api::endpoint::add(&app, admin.clone(), add)
        .await
        .unwrap();
    let mut spec = app.views.read().unwrap().endpoints["old"].spec.clone();
    spec.max_connections = 7;
    app.store
        .append(
            &stream::endpoint("old"),
            ExpectedVersion::Any,
            admin.clone(),
            vec![Event::EndpointUpdated {
                name: "old".into(),
                spec,
            }],
        )
        .await
        .unwrap();
    let update: EndpointUpdate =
        serde_json::from_value(serde_json::json!({"name": "old", "port": 1993})).unwrap();
    ferryd::api::endpoint::update(&app, admin, update)
        .await
        .expect("the update is recorded");
    let now = app.views.read().unwrap().endpoints["old"].spec.clone();
    assert_eq!(
        (now.port, now.max_connections),
        (1993, 7),
        "the other worker's cap stays"
    );
}
