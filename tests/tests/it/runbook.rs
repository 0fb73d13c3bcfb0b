//! `ferryctl runbook`: the batch's routing runbooks from what ferryd knows.

use ferry_tests::Ferryd;

#[test]
fn runbooks_carry_the_batch_users() {
    let d = Ferryd::start();
    for name in ["src", "dst"] {
        let root = d.dir().join(name);
        std::fs::create_dir_all(&root).unwrap();
        d.ctl_ok(&[
            "endpoint",
            "add",
            name,
            "--kind",
            "maildir",
            "--host",
            root.to_str().unwrap(),
        ]);
    }
    d.create_batch("sales-q1", "src", "dst", &["zoe", "sean.o'brien"], &[]);
    let out_dir = d.dir().join("runbooks");
    let listed = d.ctl_ok(&[
        "runbook",
        "sales-q1",
        "-o",
        out_dir.to_str().unwrap(),
        "--smart-host",
        "mail.old.example",
    ]);
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "batch-setup-sales-q1.ps1",
            "cutover-sales-q1-sean.o_27_brien@old.example-exo.ps1",
            "cutover-sales-q1-sean.o_27_brien@old.example-forward.ps1",
            "cutover-sales-q1-sean.o_27_brien@old.example-mailuser.ps1",
            "cutover-sales-q1-zoe@old.example-exo.ps1",
            "cutover-sales-q1-zoe@old.example-forward.ps1",
            "cutover-sales-q1-zoe@old.example-mailuser.ps1",
        ]
    );
    assert_eq!(listed.lines().count(), 7, "{listed}");

    let read = |n: &str| std::fs::read_to_string(out_dir.join(n)).unwrap();
    let setup = read("batch-setup-sales-q1.ps1");
    assert!(
        setup.contains("$smartHost = 'mail.old.example'\n"),
        "{setup}"
    );
    assert!(
        setup.contains("$users = @(\n    'zoe@new.example',\n    'sean.o''brien@new.example'\n)\n"),
        "{setup}"
    );
    let forward = read("cutover-sales-q1-sean.o_27_brien@old.example-forward.ps1");
    assert!(
        forward.contains("$source = 'sean.o''brien@old.example'\n"),
        "{forward}"
    );
    assert!(
        forward.contains("$target = 'sean.o''brien@new.example'\n"),
        "{forward}"
    );
    assert!(
        forward.contains("-DeliverToMailboxAndForward $false"),
        "{forward}"
    );

    let err = d.ctl_err(&["runbook", "no-such-batch", "-o", out_dir.to_str().unwrap()]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no-such-batch"), "{err}");
}
