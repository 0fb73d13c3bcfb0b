//! The batch state machine in given / when / then form: given the events
//! that put a batch in a state, when a command comes, then it is accepted
//! or refused with its reason.

use ferry_events::{
    Actor, BatchOptions, Event, ExpectedVersion, ItemKey, MailboxSpec, Outcome, PassKind, Sequencer,
};
use ferry_projections::rules::{Command, MX_HOLD_US, check};
use ferry_projections::{BatchState, Projections};

const T0: i64 = 1_790_000_000_000_000;
const HOUR: i64 = 3_600_000_000;

struct Given {
    seq: Sequencer,
    views: Projections,
    now: i64,
}

impl Given {
    fn new() -> Given {
        let mut g = Given {
            seq: Sequencer::default(),
            views: Projections::default(),
            now: T0,
        };
        g.event(Event::BatchCreated {
            name: "wave".into(),
            source: "old".into(),
            destination: "new".into(),
            options: BatchOptions::default(),
        });
        g.event(Event::MailboxAdded {
            batch: "wave".into(),
            mailbox: MailboxSpec {
                address: "anna@old.example".into(),
                // As a CSV may spell it; the MX guard must still match.
                destination_address: "Anna@New.Example".into(),
                source_login: None,
                source_secret: None,
                destination_login: None,
                destination_secret: None,
            },
        });
        g
    }

    /// Appends `event`; returns its sequence.
    fn event(&mut self, event: Event) -> u64 {
        self.now += 1_000_000;
        let s = self
            .seq
            .sequence(
                "batch/wave",
                ExpectedVersion::Any,
                &Actor::Daemon,
                vec![event],
                self.now,
            )
            .unwrap();
        let env = &s.envelopes[0];
        self.views.apply(env);
        env.seq
    }

    fn pass(&mut self, pass: PassKind) -> u64 {
        let id = self.event(Event::PassRequested {
            batch: "wave".into(),
            pass,
            older_than_days: None,
            not_before_us: None,
        });
        self.start(id, pass)
    }

    fn start(&mut self, id: u64, pass: PassKind) -> u64 {
        self.event(Event::PassStarted {
            batch: "wave".into(),
            pass_id: id,
            pass,
        });
        self.event(Event::MailboxPassStarted {
            mailbox: "anna@old.example".into(),
            batch: "wave".into(),
            pass_id: id,
            pass,
        });
        id
    }

    fn finish(&mut self, id: u64, outcome: Outcome) {
        self.event(Event::MailboxPassFinished {
            mailbox: "anna@old.example".into(),
            pass_id: id,
            outcome,
            detail: String::new(),
        });
        self.event(Event::PassFinished {
            batch: "wave".into(),
            pass_id: id,
            outcome,
        });
    }

    fn in_state(state: BatchState) -> Given {
        use BatchState::*;
        let mut g = Given::new();
        match state {
            Created => {}
            Syncing => {
                g.pass(PassKind::Full);
            }
            Synced | SyncedWithErrors | Failed | Stopped => {
                let id = g.pass(PassKind::Full);
                if state == SyncedWithErrors {
                    g.item_failed();
                }
                let outcome = match state {
                    Synced => Outcome::Succeeded,
                    SyncedWithErrors => Outcome::SucceededWithErrors,
                    Failed => Outcome::Failed,
                    _ => {
                        g.event(Event::BatchStopped {
                            batch: "wave".into(),
                        });
                        Outcome::Stopped
                    }
                };
                g.finish(id, outcome);
            }
            Stopping => {
                g.pass(PassKind::Full);
                g.event(Event::BatchStopped {
                    batch: "wave".into(),
                });
            }
            Completing | Completed | CompletedWithErrors => {
                let id = g.pass(PassKind::Full);
                g.finish(id, Outcome::Succeeded);
                let id = g.event(Event::CompletionRequested {
                    batch: "wave".into(),
                    not_before_us: None,
                });
                g.start(id, PassKind::Delta);
                if state != Completing {
                    let with_errors = state == CompletedWithErrors;
                    let outcome = if with_errors {
                        Outcome::SucceededWithErrors
                    } else {
                        Outcome::Succeeded
                    };
                    g.finish(id, outcome);
                    g.event(Event::BatchCompleted {
                        batch: "wave".into(),
                        with_errors,
                    });
                }
            }
            Removing => unreachable!("a deleted batch leaves the views"),
        }
        assert_eq!(g.views.batches["wave"].state, state, "given {state}");
        g
    }

    fn item_failed(&mut self) {
        self.event(Event::ItemFailed {
            mailbox: "anna@old.example".into(),
            key: ItemKey {
                folder: "INBOX".into(),
                uidvalidity: 1,
                uid: 7,
            },
            class: "Item".into(),
            reason: "NO [LIMIT] too large".into(),
        });
    }

    fn when(&self, cmd: &Command) -> Result<(), String> {
        check(&self.views, &self.views.batches["wave"], cmd, self.now)
    }
}

#[test]
fn each_state_accepts_only_the_commands_that_fit() {
    use BatchState::*;
    let commands = [
        Command::Start(PassKind::Full),
        Command::Stop,
        Command::Complete,
        Command::Delete { force: false },
        Command::Schedule,
        Command::AddUsers,
        Command::Cutover,
    ];
    // Columns follow `commands`: start, stop, complete, delete, schedule, add, cutover.
    let table: [(BatchState, [bool; 7]); 10] = [
        (Created, [true, false, false, true, true, true, true]),
        (Syncing, [false, true, true, false, true, true, true]),
        (Synced, [true, true, true, true, true, true, true]),
        (SyncedWithErrors, [true, true, true, true, true, true, true]),
        (Failed, [true, true, true, true, true, true, true]),
        (Stopping, [false, false, false, false, true, true, false]),
        (Stopped, [true, false, true, true, true, true, false]),
        (Completing, [false, true, false, false, false, false, false]),
        (Completed, [false, false, false, true, false, false, false]),
        (
            CompletedWithErrors,
            [false, false, false, true, false, false, false],
        ),
    ];
    let mut wrong = Vec::new();
    for (state, expected) in table {
        let g = Given::in_state(state);
        for (cmd, accept) in commands.iter().zip(expected) {
            let got = g.when(cmd);
            if got.is_ok() != accept {
                wrong.push(format!(
                    "{state} + {cmd:?}: expected accept={accept}, got {got:?}"
                ));
            }
            if let Err(why) = got {
                // A refusal names the batch and its state.
                assert!(why.contains(&format!("batch wave is {state}")), "{why}");
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn refusals_say_why() {
    let g = Given::in_state(BatchState::Syncing);
    let why = g.when(&Command::Delete { force: false }).unwrap_err();
    assert!(why.contains("stop it and wait before deleting"), "{why}");
    let why = g.when(&Command::Start(PassKind::Delta)).unwrap_err();
    assert!(why.contains("a full pass is running"), "{why}");
    let g = Given::in_state(BatchState::Created);
    let why = g.when(&Command::Complete).unwrap_err();
    assert!(why.contains("run a full pass first"), "{why}");
}

#[test]
fn retry_errors_needs_a_finished_pass_with_errors() {
    let g = Given::in_state(BatchState::Synced);
    let why = g.when(&Command::Start(PassKind::RetryErrors)).unwrap_err();
    assert!(
        why.contains("no mailbox has a finished pass with errors"),
        "{why}"
    );
    let g = Given::in_state(BatchState::SyncedWithErrors);
    assert_eq!(g.when(&Command::Start(PassKind::RetryErrors)), Ok(()));
    // A mailbox that failed as a whole, with no item errors, is resumed.
    let g = Given::in_state(BatchState::Failed);
    assert_eq!(g.when(&Command::Start(PassKind::RetryErrors)), Ok(()));
}

#[test]
fn a_second_completion_is_refused_while_one_waits() {
    let mut g = Given::in_state(BatchState::Syncing);
    g.event(Event::CompletionRequested {
        batch: "wave".into(),
        not_before_us: Some(T0 + 10 * HOUR),
    });
    let why = g.when(&Command::Complete).unwrap_err();
    assert!(why.contains("completion is already requested"), "{why}");
}

#[test]
fn deletion_waits_72_hours_after_the_mx_switch_unless_forced() {
    let mut g = Given::in_state(BatchState::Synced);
    g.views.apply(
        &Sequencer::default()
            .sequence(
                "domain/new.example",
                ExpectedVersion::Any,
                &Actor::Daemon,
                vec![Event::MxSwitched {
                    domain: "new.example".into(),
                    to: "new-example.mail.protection.outlook.com.".into(),
                    manual: true,
                }],
                g.now,
            )
            .map(|mut s| {
                // Sequenced past the batch's events, as the live log would.
                s.envelopes[0].seq = g.views.head + 1;
                s.envelopes.remove(0)
            })
            .unwrap(),
    );
    let switched = g.now;
    let why = g.when(&Command::Delete { force: false }).unwrap_err();
    assert!(why.contains("the MX of new.example moved"), "{why}");
    assert!(why.contains("--force"), "{why}");
    assert_eq!(g.when(&Command::Delete { force: true }), Ok(()));
    g.now = switched + MX_HOLD_US - HOUR;
    assert!(g.when(&Command::Delete { force: false }).is_err());
    g.now = switched + MX_HOLD_US;
    assert_eq!(g.when(&Command::Delete { force: false }), Ok(()));
}
