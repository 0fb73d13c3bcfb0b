//! MX check, switch and verification against a real BIND 9 on 127.0.0.1:
//! first the DNS library alone, then through ferryd and ferryctl.

use std::net::SocketAddr;
use std::time::Duration;

use ferry_dns::TsigKey;
use ferry_testservers::Bind;

fn addr(bind: &Bind) -> SocketAddr {
    bind.addr().parse().unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn library_checks_updates_and_polls_a_real_server() {
    let bind = Bind::start().expect("named starts");
    let ns = [addr(&bind)];
    rt().block_on(async {
        let mx = ferry_dns::lookup_mx("example.test", &ns).await.unwrap();
        assert_eq!(mx.records, vec![(10, "mx1.example.test".to_string())]);
        assert_eq!(mx.ttl, 7200);
        assert_eq!(mx.server, bind.addr());

        assert_eq!(
            ferry_dns::lookup_cname("autodiscover.example.test", &ns)
                .await
                .unwrap()
                .as_deref(),
            Some("autodiscover.outlook.com")
        );
        assert_eq!(
            ferry_dns::lookup_cname("autodiscover.manual.test", &ns)
                .await
                .unwrap(),
            None
        );
        let err = ferry_dns::lookup_mx("nothing.example.test", &ns)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no MX"), "{err}");

        // NS of the zone → ns1.example.test → 127.0.0.1, on the given port.
        let auth = ferry_dns::authoritative_servers("example.test", &ns, bind.port())
            .await
            .unwrap();
        assert_eq!(auth, vec![addr(&bind)]);

        // A wrong secret and an unknown key are refused by name; nothing changes.
        let wrong = TsigKey::from_file(&bind.wrong_secret_key_file()).unwrap();
        let err = ferry_dns::update_mx(
            addr(&bind),
            "example.test",
            "example.test",
            "mx.new.test",
            10,
            3600,
            &wrong,
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("NOTAUTH") && text.contains("BADSIG"),
            "{text}"
        );
        let unknown = TsigKey::from_file(&bind.unknown_key_file()).unwrap();
        let err = ferry_dns::update_mx(
            addr(&bind),
            "example.test",
            "example.test",
            "mx.new.test",
            10,
            3600,
            &unknown,
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("NOTAUTH") && text.contains("BADKEY"),
            "{text}"
        );
        // The right key on a zone that takes no updates: REFUSED.
        let key = TsigKey::from_file(&bind.key_file()).unwrap();
        let err = ferry_dns::update_mx(
            addr(&bind),
            "manual.test",
            "manual.test",
            "mx.new.test",
            10,
            3600,
            &key,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("REFUSED"), "{err}");
        assert_eq!(
            ferry_dns::query_mx_at(addr(&bind), "example.test")
                .await
                .unwrap(),
            vec![(10, "mx1.example.test".to_string())]
        );

        ferry_dns::update_mx(
            addr(&bind),
            "example.test",
            "example.test",
            "mx.new.test",
            10,
            3600,
            &key,
        )
        .await
        .unwrap();
        let polled = ferry_dns::poll_mx(
            "example.test",
            "mx.new.test",
            &ns,
            Duration::from_secs(5),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(polled.len(), 1);
        assert!(polled[0].ok, "{polled:?}");
        assert_eq!(polled[0].detail, "10 mx.new.test");
        let mx = ferry_dns::lookup_mx("example.test", &ns).await.unwrap();
        assert_eq!(mx.records, vec![(10, "mx.new.test".to_string())]);
        assert_eq!(mx.ttl, 3600);

        // A host the servers do not answer: not ok once the time is up.
        let polled = ferry_dns::poll_mx(
            "example.test",
            "mx.other.test",
            &ns,
            Duration::from_millis(600),
            Duration::from_millis(200),
        )
        .await;
        assert!(!polled[0].ok);
        assert_eq!(polled[0].detail, "10 mx.new.test");
    });
}
