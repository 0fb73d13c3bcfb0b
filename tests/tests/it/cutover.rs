//! Cutover over two real Dovecot servers: a final delta pass for the users
//! named, their routing actions (runbooks, a hook command), each recorded
//! in order; refusals for a mailbox with errors or already cut over; a
//! failing hook leaves the user where they were.

use ferry_tests::pair::{Pair, add_mail, contents, count};
use ferry_testservers::Dovecot;

/// A message the destination will refuse (Dovecot stores no empty one),
/// dropped straight into the source's Maildir.
fn add_broken(d: &Dovecot, user: &str) {
    let new = d.dir().join("home").join(user).join("Maildir/new");
    std::fs::write(new.join("1700000000.M1P1.broken"), b"").unwrap();
}

fn field<'a>(e: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &e["event"][e["event_type"].as_str().unwrap()][name]
}

fn state(p: &Pair, address: &str) -> String {
    p.ferry.ctl_json(&["mailbox", "show", address])["data"]["state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_cut_over_with_their_routing_recorded_in_order() {
    let hooks = tempfile::tempdir().unwrap();
    let log = hooks.path().join("payloads.jsonl");
    let config = format!(
        "[cutover]\nhook = {{ command = '''case \"$FERRY_HOOK_PAYLOAD\" in *cleo@*) echo no such group >&2; exit 3;; esac; cat >> {log}; echo >> {log}; echo routed'''}}\n",
        log = log.display()
    );
    let p = Pair::start("wave", &["anna", "bert", "cleo", "dana"], Some(&config));
    for (i, u) in ["anna", "bert", "cleo", "dana"].iter().enumerate() {
        add_mail(&p.src, u, 20 + i as u64, 8).await;
    }
    add_broken(&p.src, "dana");
    p.ferry
        .ctl_ok(&["batch", "start", "wave", "--pass", "full"]);
    p.ferry.ctl(&["batch", "wait", "wave", "--timeout", "300"]);
    assert_eq!(state(&p, "dana@old.example"), "SyncedWithErrors");
    // Mail keeps arriving until the cutover.
    add_mail(&p.src, "anna", 30, 2).await;
    add_mail(&p.src, "bert", 31, 2).await;

    // Refused, with reasons, and nothing recorded.
    let head = p.ferry.head();
    let why = p.ferry.ctl_err(&["cutover", "dana@old.example"]);
    assert!(
        why.contains("dana@old.example has 1 unresolved errors"),
        "{why}"
    );
    assert!(why.contains("--force"), "{why}");
    assert_eq!(p.ferry.head(), head);

    let out = p
        .ferry
        .ctl_ok(&["cutover", "anna@old.example", "Bert@Old.example"]);
    assert!(out.contains("anna@old.example, bert@old.example"), "{out}");
    p.ferry.wait_for(120, "both users cut over", |f| {
        ["anna", "bert"].iter().all(|u| {
            f.ctl_json(&["mailbox", "show", &format!("{u}@old.example")])["data"]["state"]
                == "CutOver"
        })
    });
    // The final delta pass copied what arrived since the full pass.
    assert_eq!(count(&contents(&p.dst, "anna").await), 10);
    assert_eq!(count(&contents(&p.dst, "bert").await), 10);

    // In order: request, final pass for those two only, then per user the
    // runbooks, the hook and the cutover.
    let events = p.ferry.events();
    let pos = |pred: &dyn Fn(&serde_json::Value) -> bool| -> usize {
        events.iter().position(pred).expect("event present")
    };
    let req = pos(&|e| e["event_type"] == "CutoverRequested");
    let req_seq = &events[req]["seq"];
    assert_eq!(
        field(&events[req], "mailboxes"),
        &serde_json::json!(["anna@old.example", "bert@old.example"])
    );
    let started = pos(&|e| e["event_type"] == "PassStarted" && field(e, "pass_id") == req_seq);
    let finished = pos(&|e| e["event_type"] == "PassFinished" && field(e, "pass_id") == req_seq);
    assert!(req < started && started < finished);
    let in_pass: Vec<&str> = events[started..finished]
        .iter()
        .filter(|e| e["event_type"] == "MailboxPassStarted")
        .map(|e| field(e, "mailbox").as_str().unwrap())
        .collect();
    assert_eq!(in_pass.len(), 2);
    assert!(!in_pass.contains(&"cleo@old.example") && !in_pass.contains(&"dana@old.example"));
    for u in ["anna@old.example", "bert@old.example"] {
        let of = |kind: &str, action: Option<&str>| {
            pos(&|e| {
                e["event_type"] == kind
                    && field(e, "mailbox") == u
                    && action.is_none_or(|a| field(e, "action") == a)
            })
        };
        let runbook = of("RoutingAction", Some("runbook"));
        let hook = of("RoutingAction", Some("hook"));
        let done = of("UserCutOver", None);
        assert!(finished < runbook && runbook < hook && hook < done, "{u}");
        assert_eq!(field(&events[runbook], "ok"), true);
        assert_eq!(field(&events[hook], "ok"), true);
        let detail = field(&events[hook], "detail").as_str().unwrap();
        assert!(
            detail.contains("exit 0") || detail.contains("exit status 0"),
            "{detail}"
        );
        assert!(detail.contains("routed"), "{detail}");
        assert_eq!(field(&events[done], "forced"), false);
    }

    // The hook got one payload per user.
    let payloads: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(payloads.len(), 2);
    let anna = payloads
        .iter()
        .find(|p| p["user"] == "anna@old.example")
        .unwrap();
    assert_eq!(anna["batch"], "wave");
    assert_eq!(anna["source_address"], "anna@old.example");
    assert_eq!(anna["destination_address"], "anna@new.example");

    // The runbooks are on disk, idempotent scripts naming the user.
    let dir = p.ferry.data_dir.join("runbooks/wave");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    let exo = names
        .iter()
        .find(|n| n.contains("anna") && n.ends_with("-exo.ps1"))
        .unwrap();
    let text = std::fs::read_to_string(dir.join(exo)).unwrap();
    assert!(text.contains("Remove-DistributionGroupMember"), "{text}");
    assert!(text.contains("anna@new.example"), "{text}");

    // Once cut over, never again; and later passes leave the user alone.
    let why = p.ferry.ctl_err(&["cutover", "anna@old.example"]);
    assert!(
        why.contains("anna@old.example is already cut over"),
        "{why}"
    );
    p.ferry.run_pass("wave", "delta");
    let last_pass = p.ferry.events_of("PassStarted");
    let last_id = field(last_pass.last().unwrap(), "pass_id").clone();
    let mut touched: Vec<String> = p
        .ferry
        .events_of("MailboxPassStarted")
        .iter()
        .filter(|e| field(e, "pass_id") == &last_id)
        .map(|e| field(e, "mailbox").as_str().unwrap().to_string())
        .collect();
    touched.sort();
    assert_eq!(touched, ["cleo@old.example", "dana@old.example"]);

    // A failing hook: recorded with its exit status, the user not cut over,
    // and the cutover may be asked for again.
    p.ferry.ctl_ok(&["cutover", "cleo@old.example"]);
    p.ferry.wait_for(120, "cleo's cutover abandoned", |f| {
        f.events_of("RoutingAction")
            .iter()
            .any(|e| field(e, "mailbox") == "cleo@old.example" && field(e, "action") == "abandoned")
    });
    let cleo: Vec<serde_json::Value> = p
        .ferry
        .events_of("RoutingAction")
        .into_iter()
        .filter(|e| field(e, "mailbox") == "cleo@old.example")
        .collect();
    let hook = cleo.iter().find(|e| field(e, "action") == "hook").unwrap();
    assert_eq!(field(hook, "ok"), false);
    let detail = field(hook, "detail").as_str().unwrap();
    assert!(
        detail.contains('3') && detail.contains("no such group"),
        "{detail}"
    );
    assert_ne!(state(&p, "cleo@old.example"), "CutOver");
    assert!(p.ferry.events_of("UserCutOver").len() == 2);

    // Forced past its errors, dana is cut over, and the force is recorded.
    p.ferry.ctl_ok(&["cutover", "dana@old.example", "--force"]);
    p.ferry.wait_for(120, "dana cut over", |f| {
        f.ctl_json(&["mailbox", "show", "dana@old.example"])["data"]["state"] == "CutOver"
    });
    let req = p.ferry.events_of("CutoverRequested");
    let last = req.last().unwrap();
    assert_eq!(field(last, "forced"), true);
    assert!(
        field(last, "overridden")[0]
            .as_str()
            .unwrap()
            .contains("unresolved errors")
    );
    let done = p.ferry.events_of("UserCutOver");
    assert_eq!(field(done.last().unwrap(), "forced"), true);
}
