//! The listings of the real ipvsadm 1.31 (recorded in the IPVS oracle VM by the job scripts in
//! `tests/golden/listing/`), rebuilt from an `Ipvs` driven with the same commands, byte for
//! byte. `--nosort` listings are compared block by block (the kernel's service order is its
//! hash-bucket order, seeded per boot); destination order within a block is exact.

mod support;

use rvs_config::{render, NoNames};
use rvs_core::ipvs::Ipvs;
use rvs_core::model::ServiceKey;
use rvs_core::service::Service;
use rvs_core::time::Tick;
use support::transcript::{self, Listing, Step};

/// Render what `step` asks for; `None` for a command that is not a listing.
fn render_step(
    ipvs: &Ipvs,
    step: &Step,
    now: Tick,
    dump: &Option<Vec<ServiceKey>>,
) -> Option<(String, i32)> {
    let l = transcript::listing(&step.args)?;
    let svcs: Vec<&Service> = match dump {
        Some(keys) => keys
            .iter()
            .map(|k| ipvs.service(k).expect("dumped"))
            .collect(),
        None => ipvs.services().collect(),
    };
    Some(match l {
        Listing::All(o) if o.connection || o.timeout || o.daemon => {
            (render::listing(ipvs, now, &NoNames, &o, &[]), 0)
        }
        Listing::All(o) => (render::list_all_from(ipvs, svcs, &NoNames, &o), 0),
        Listing::Save(o) => (render::save_from(ipvs, svcs, &NoNames, &o), 0),
        Listing::One(k, o) => match render::list_service(ipvs, &k, &NoNames, &o) {
            Some(t) => (t, 0),
            None => ("No such service\n".to_string(), 1),
        },
    })
}

fn title_lines(args: &[String]) -> usize {
    if args.iter().any(|a| a == "-S") {
        0
    } else {
        3
    }
}

/// Replay a transcript; returns (listings compared, commands applied).
fn replay(text: &str) -> (usize, usize) {
    let mut ipvs = transcript::new_ipvs();
    let now = Tick(0);
    let (mut listed, mut applied) = (0, 0);
    let steps = transcript::steps(text);
    let dumps = transcript::dump_orders(&steps);
    for (step, dump) in steps.iter().zip(&dumps) {
        if step.args.first().map(String::as_str) != Some("ipvsadm") {
            continue;
        }
        match render_step(&ipvs, step, now, dump) {
            Some((got, rc)) => {
                assert_eq!(rc, step.rc, "{:?}", step.args);
                if step.args.iter().any(|a| a == "--nosort") {
                    let n = title_lines(&step.args);
                    assert_eq!(
                        transcript::blocks(&got, n),
                        transcript::blocks(&step.output, n),
                        "{:?}",
                        step.args
                    );
                } else {
                    assert_eq!(got, step.output, "{:?}", step.args);
                }
                listed += 1;
            }
            None if step.rc == 0 => {
                transcript::apply(&mut ipvs, &step.args, now);
                applied += 1;
            }
            None => {}
        }
    }
    (listed, applied)
}

#[test]
fn static_state_every_listing_mode() {
    let (listed, applied) = replay(include_str!("golden/listing/static.out"));
    assert!(listed >= 40, "{listed}");
    assert!(applied >= 50, "{applied}");
}
