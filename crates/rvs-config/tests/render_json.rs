//! The `--json` documents: valid JSON, the documented shape, the same facts as the text.

mod support;

use rvs_config::{render, ListOpts, NoNames};
use rvs_core::time::Tick;
use serde_json::Value;
use support::transcript;

/// The state of the static golden job (every scheduler, flag, tunnel and family).
fn static_state() -> rvs_core::ipvs::Ipvs {
    let text = include_str!("golden/listing/static.out");
    let mut ipvs = transcript::new_ipvs();
    for s in transcript::steps(text) {
        if s.args.first().map(String::as_str) != Some("ipvsadm") {
            continue;
        }
        if transcript::listing(&s.args).is_some() {
            break;
        }
        if s.rc == 0 {
            transcript::apply(&mut ipvs, &s.args, Tick(0));
        }
    }
    ipvs
}

fn json(opts: ListOpts) -> Value {
    let ipvs = static_state();
    let o = ListOpts { json: true, ..opts };
    let text = render::listing(&ipvs, Tick(0), &NoNames, &o, None, &[]).expect("listing");
    assert!(text.ends_with('\n'));
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn service_table_shape_and_order() {
    let v = json(ListOpts::default());
    assert_eq!(v["version"], "1.2.1");
    assert_eq!(v["conn_tab_size"], 4096);
    let svcs = v["services"].as_array().unwrap();
    let text = render::list_all(&static_state(), &NoNames, &ListOpts::default());
    let text_services = text
        .lines()
        .skip(3)
        .filter(|l| !l.starts_with("  ->"))
        .count();
    assert_eq!(svcs.len(), text_services);
    assert_eq!(svcs.len(), 29);
    // ipvsadm's order: fwmark 4294967295 first (signed-difference quirk), printed unsigned
    assert_eq!(svcs[0]["fwmark"], 4_294_967_295u64);
    assert_eq!(svcs[0]["protocol"], Value::Null);
    assert_eq!(svcs[0]["persistent"]["netmask"], "255.255.0.0");
    let sip = svcs
        .iter()
        .find(|s| s["port"] == 5060)
        .expect("sip service");
    assert_eq!(sip["pe"], "sip");
    assert_eq!(sip["ops"], true);
    assert_eq!(sip["persistent"]["timeout"], 360);
    let tun = svcs.iter().find(|s| s["port"] == 8080).unwrap();
    let dests = tun["dests"].as_array().unwrap();
    assert_eq!(dests.len(), 10);
    let gue = dests.iter().find(|d| d["address"] == "10.1.0.9").unwrap();
    assert_eq!(gue["tunnel"]["type"], "gue");
    assert_eq!(gue["tunnel"]["port"], 65535);
    assert_eq!(gue["tunnel"]["csum"], "remcsum");
    let masq = dests.iter().find(|d| d["port"] == 81).unwrap();
    assert_eq!(masq["tunnel"], Value::Null);
    assert_eq!(masq["forward"], "Masq");
    assert_eq!(masq["u_threshold"], 0);
    assert_eq!(masq["stats"]["conns"], 0);
    let v6 = svcs
        .iter()
        .find(|s| s["address"] == "2001:db8::80")
        .unwrap();
    assert_eq!(v6["family"], "inet6");
    assert_eq!(v6["persistent"]["netmask"], 64);
    let mh = svcs.iter().find(|s| s["port"] == 54).unwrap();
    assert_eq!(
        mh["sched_flags"],
        serde_json::json!(["mh-fallback", "mh-port"])
    );
}

#[test]
fn other_documents() {
    let t = json(ListOpts {
        timeout: true,
        ..ListOpts::default()
    });
    assert_eq!(
        t,
        serde_json::json!({"tcp": 900, "tcpfin": 120, "udp": 300})
    );
    let c = json(ListOpts {
        connection: true,
        ..ListOpts::default()
    });
    assert_eq!(c, serde_json::json!({"connections": []}));
    let d = json(ListOpts {
        daemon: true,
        ..ListOpts::default()
    });
    assert_eq!(d, serde_json::json!({"daemons": []}));
    let daemons = [render::Daemon {
        master: true,
        mcast_ifn: "eth\"0".into(),
        syncid: 1,
        maxlen: 1472,
        group: Some("ff02::1".parse().unwrap()),
        port: 8848,
        ttl: 1,
    }];
    let v: Value = serde_json::from_str(&render::daemons_json(&daemons)).unwrap();
    assert_eq!(v["daemons"][0]["mcast_interface"], "eth\"0");
    assert_eq!(v["daemons"][0]["group"], "ff02::1");
}

#[test]
fn one_service_and_a_missing_one() {
    let ipvs = static_state();
    let key = rvs_core::model::ServiceKey::Fwmark {
        af: rvs_core::model::Family::V6,
        mark: 2,
    };
    let o = ListOpts {
        json: true,
        ..ListOpts::default()
    };
    let text = render::listing(&ipvs, Tick(0), &NoNames, &o, Some(&key), &[]).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["services"].as_array().unwrap().len(), 1);
    assert_eq!(v["services"][0]["dests"][0]["address"], "2001:db8::1");
    let missing = rvs_core::model::ServiceKey::Fwmark {
        af: rvs_core::model::Family::V4,
        mark: 99,
    };
    assert!(render::listing(&ipvs, Tick(0), &NoNames, &o, Some(&missing), &[]).is_none());
    let text_o = ListOpts::default();
    assert!(render::listing(&ipvs, Tick(0), &NoNames, &text_o, Some(&missing), &[]).is_none());
}
