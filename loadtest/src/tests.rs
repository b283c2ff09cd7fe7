//! Tests of the harness's own logic: no server, no wrk, no network; only parsing,
//! arithmetic and the presence of the committed scripts. Each check returns what went
//! wrong, so one failing check names its case.

use std::path::Path;

use clap::Parser;

use crate::chart;
use crate::cli::{Flags, Settings, parse_extra, selected};
use crate::http::url_host;
use crate::machine::utc_at;
use crate::peers::{Site, haproxy_cfg, nginx_conf};
use crate::process::find_program;
use crate::run::{Attempt, Cell};
use crate::scenario::Scenario;
use crate::target::shell_join;
use crate::text::{ms, thousands};
use crate::wrk::{Measurement, parse_result};

/// One `#[test]` per check: a failed check panics with its message.
macro_rules! checks {
    ($($name:ident => $check:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                if let Err(e) = $check() {
                    panic!("{e}");
                }
            }
        )*
    };
}

checks! {
    wrk_result_line_parses_with_and_without_counts => wrk_result_line,
    quick_defaults_and_explicit_flags_win => quick_defaults,
    bad_flags_are_refused => bad_flags,
    extras_must_be_loopback_http => extras_loopback,
    median_is_one_real_run => median,
    a_measurements_json_is_one_level => flat_json,
    peak_charts_show_bars_whiskers_and_gaps => peak_chart,
    dates_and_numbers_format => formatting,
    shell_commands_quote_what_needs_it => shell_quoting,
    every_scenario_script_and_body_is_committed => scripts_exist,
    generated_proxy_configs_balance_every_shard => proxy_configs,
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn settings(args: &[&str]) -> Result<Settings, String> {
    let flags = Flags::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    Settings::from_flags(flags, Path::new("/repo"), "STAMP").map_err(|e| format!("{e:#}"))
}

fn wrk_result_line() -> Result<(), String> {
    let plain = "Running 1s test\nLOADLAB_RESULT \
        {\"requests\":1000,\"duration_us\":2000000,\"bytes\":1,\"connect\":0,\
                 \"read\":2,\"write\":0,\"timeout\":1,\"status\":7,\"p50_us\":400,\"p90_us\":900,\
                 \"p99_us\":1500,\
                     \"p999_us\":4000,\"max_us\":9000,\"mean_us\":500,\"count_2xx\":null,\
                 \"count_non2xx\":null,\"count_201\":null}\n";
    let m = Measurement::from_wrk(&parse_result(plain)?);
    ensure(
        m.rps == 500.0 && m.p99_ms == 1.5 && m.answers.non_2xx == 7,
        || format!("{m:?}"),
    )?;
    ensure(
        m.answers.errors.total() == 3 && m.answers.rows.inserts_acked.is_none(),
        || format!("{m:?}"),
    )?;
    let counted = plain.replace(
        "\"count_2xx\":null,\"count_non2xx\":null,\"count_201\":null",
        "\"count_2xx\":990,\"count_non2xx\":10,\"count_201\":990",
    );
    let mut m = Measurement::from_wrk(&parse_result(&counted)?);
    ensure(
        m.answers.non_2xx == 10 && m.answers.rows.inserts_acked == Some(990),
        || format!("{m:?}"),
    )?;
    m.answers.rows.rows_found = Some(989);
    ensure(m.answers.rows.missing(), || {
        "989 rows for 990 acks must count as missing".into()
    })?;
    m.answers.rows.rows_found = Some(995);
    ensure(!m.answers.rows.missing(), || {
        "995 rows for 990 acks are fine".into()
    })?;
    ensure(parse_result("wrk: connection refused").is_err(), || {
        "no result line must be an error".into()
    })
}

fn quick_defaults() -> Result<(), String> {
    let s = settings(&["--quick"])?;
    ensure(
        s.duration.as_secs() == 1 && s.repeat == 1 && s.connections == [64],
        || format!("{s:?}"),
    )?;
    let s = settings(&[
        "--quick",
        "--duration",
        "3s",
        "--connections",
        "8,16",
        "--scenarios",
        "insert,healthz",
    ])?;
    ensure(
        s.duration.as_secs() == 3 && s.connections == [8, 16],
        || format!("{s:?}"),
    )?;
    ensure(s.scenarios == [Scenario::Healthz, Scenario::Insert], || {
        format!("{:?}", s.scenarios)
    })?;
    let s = settings(&[
        "--configs",
        "sharded,shards1",
        "--extra",
        "node=http://127.0.0.1:3000/",
    ])?;
    ensure(s.configs == ["shards1", "sharded"], || {
        format!("{:?}", s.configs)
    })?;
    let s = settings(&["--extra", "node=http://127.0.0.1:3000"])?;
    ensure(s.configs.last().map(String::as_str) == Some("node"), || {
        format!("{:?}", s.configs)
    })?;
    ensure(s.out == Path::new("/repo/benches/results/STAMP"), || {
        format!("{:?}", s.out)
    })?;
    ensure(
        selected(&[]) && selected(&["loadtest".into()]) && !selected(&["kernel".into()]),
        || "bench filters".into(),
    )
}

fn bad_flags() -> Result<(), String> {
    for args in [
        &["--duration", "1500ms"][..],
        &["--configs", "apache"],
        &["--repeat", "0"],
        &["--connections", "0"],
        &["--scenarios", "nope"],
        &["--extra", "nginx=http://127.0.0.1:1"],
        &["--extra", "haproxy=http://127.0.0.1:1"],
        &["--shards", "0"],
    ] {
        ensure(settings(args).is_err(), || {
            format!("{args:?} must be refused")
        })?;
    }
    Ok(())
}

fn extras_loopback() -> Result<(), String> {
    for ok in [
        "a=http://127.0.0.1:3000",
        "b=http://localhost:8080/",
        "c=http://[::1]:9000",
        "d=http://127.1.2.3",
    ] {
        parse_extra(ok)?;
    }
    for bad in [
        "a=http://10.0.0.1:3000",
        "b=https://127.0.0.1",
        "c=http://example.com",
        "=http://127.0.0.1",
        "d",
    ] {
        ensure(parse_extra(bad).is_err(), || {
            format!("{bad} must be refused")
        })?;
    }
    let host = url_host("http://[::1]:9000/api/x?y=1")?;
    ensure(host == "[::1]", || host.clone())?;
    ensure(url_host("https://127.0.0.1/").is_err(), || {
        "https must be refused".into()
    })
}

/// A run whose wrk result says `rps` requests/s and a p99 of `p99_ms`.
fn attempt(rps: f64, p99_ms: f64) -> Result<Attempt, String> {
    let mut m = Measurement::from_wrk(&parse_result(&format!(
        "LOADLAB_RESULT \
            {{\"requests\":{rps},\"duration_us\":1000000,\"bytes\":0,\"connect\":0,\"read\":0,\
         \"write\":0,\"timeout\":0,\"status\":0,\
             \"p50_us\":1,\"p90_us\":1,\"p99_us\":1,\"p999_us\":1,\
         \"max_us\":1,\
         \"mean_us\":1,\"count_2xx\":null,\"count_non2xx\":null,\"count_201\":null}}"
    ))?);
    m.p99_ms = p99_ms;
    Ok(Attempt {
        rep: 0,
        measurement: Some(m),
        error: None,
    })
}

fn median() -> Result<(), String> {
    let cell = Cell {
        scenario: Scenario::Healthz,
        connections: 64,
        config: "x".into(),
        tool: crate::target::LoadTool::Wrk,
        attempts: vec![
            attempt(300.0, 3.0)?,
            attempt(100.0, 1.0)?,
            attempt(200.0, 2.0)?,
        ],
    };
    let m = cell.median().ok_or("no median")?;
    ensure(m.rps == 200.0 && m.p99_ms == 2.0, || format!("{m:?}"))?;
    ensure(cell.spread() == Some((100.0, 300.0)), || {
        format!("{:?}", cell.spread())
    })
}

fn formatting() -> Result<(), String> {
    let at = |secs: u64| utc_at(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
    let (human, folder) = at(1_700_000_000);
    ensure(
        human == "2023-11-14 22:13:20 UTC" && folder == "2023-11-14T221320Z",
        || format!("{human} {folder}"),
    )?;
    ensure(at(951_782_400).1 == "2000-02-29T000000Z", || {
        "leap day".into()
    })?;
    ensure(
        thousands(81_234.6) == "81,235" && thousands(999.0) == "999" && thousands(0.0) == "0",
        || thousands(81_234.6),
    )?;
    ensure(
        ms(0.4123) == "0.412" && ms(1.523) == "1.52" && ms(152.4) == "152",
        || ms(1.523),
    )
}

fn shell_quoting() -> Result<(), String> {
    let argv: Vec<String> = [
        "wrk",
        "-c64",
        "http://127.0.0.1:1/api/randoms?cant=1e6",
        "it's",
    ]
    .map(String::from)
    .to_vec();
    let line = shell_join(&argv);
    ensure(
        line == r"wrk -c64 'http://127.0.0.1:1/api/randoms?cant=1e6' 'it'\''s'",
        || line,
    )
}

fn scripts_exist() -> Result<(), String> {
    // The scripts live at the workspace root, beside the results.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.as_path();
    for scenario in Scenario::ALL {
        let files = [Some(scenario.script()), scenario.body_file()];
        for file in files.into_iter().flatten().map(|f| root.join(f)) {
            ensure(file.is_file(), || format!("{} is missing", file.display()))?;
        }
    }
    // h2load posts it as it is: it must be a ticket the service accepts.
    let body = root.join("benches/h2load/ticket.json");
    let ticket: serde_json::Value = std::fs::read_to_string(&body)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))?;
    let mut numbers: Vec<u64> = (1..=6)
        .filter_map(|i| ticket.get(format!("num{i}"))?.as_u64())
        .filter(|n| (1..=60).contains(n))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    ensure(numbers.len() == 6, || {
        format!("{ticket}: not a valid ticket")
    })
}

fn proxy_configs() -> Result<(), String> {
    let site = Site {
        threads: 1,
        base: 21_000,
        shards: 3,
        listen: 21_010,
        max_conns: 256,
        tls: false,
    };
    let (nginx, haproxy) = (nginx_conf(site), haproxy_cfg(site));
    for port in 21_000..21_003 {
        let server = format!("127.0.0.1:{port}");
        ensure(nginx.contains(&server) && haproxy.contains(&server), || {
            format!("shard {server} missing from a proxy config")
        })?;
    }
    for line in [
        "nbthread 1",
        "balance roundrobin",
        "http-reuse always",
        "bind 127.0.0.1:21010",
    ] {
        ensure(haproxy.contains(line), || {
            format!("haproxy.cfg lacks `{line}`")
        })?;
    }
    // HAProxy's own parser, when it is installed (`-c`: check the file, start nothing).
    let Some(program) = find_program("haproxy") else {
        return Ok(());
    };
    let dir = std::env::temp_dir().join(format!("loadtest-selfcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, &haproxy).map_err(|e| e.to_string())?;
    let checked = std::process::Command::new(program)
        .arg("-c")
        .arg("-f")
        .arg(&file)
        .output()
        .map_err(|e| format!("running haproxy -c: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let checked = checked?;
    ensure(checked.status.success(), || {
        format!(
            "haproxy -c refused the generated config: {}",
            String::from_utf8_lossy(&checked.stderr)
        )
    })
}

fn peak_chart() -> Result<(), String> {
    let folder = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = folder.path().join("throughput.svg");
    let cells = [
        Cell {
            scenario: Scenario::Healthz,
            connections: 64,
            config: "a".into(),
            tool: crate::target::LoadTool::Wrk,
            attempts: vec![
                attempt(300.0, 3.0)?,
                attempt(100.0, 1.0)?,
                attempt(200.0, 2.0)?,
            ],
        },
        Cell {
            scenario: Scenario::Healthz,
            connections: 64,
            config: "b".into(),
            tool: crate::target::LoadTool::H2load,
            attempts: vec![attempt(42_000.0, 1.0)?],
        },
    ];
    let configs = ["a".to_owned(), "b".to_owned()];
    let metric = &chart::METRICS[0];
    chart::draw(
        &path,
        metric,
        &[Scenario::Healthz],
        &[64, 256],
        &configs,
        &cells,
    )?;
    let svg = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    // The median bars' labels, a gap where no run was measured (both configurations at
    // 256 connections), the legend and the title.
    // (plotters writes each text on its own line.)
    let texts = |text: &str| svg.matches(&format!(">\n{text}\n</text>")).count();
    for text in ["200", "42.0k", "a", "b", metric.title] {
        ensure(texts(text) == 1, || {
            format!("{text} is not in the chart once")
        })?;
    }
    ensure(texts("n/a") == 2, || "not two gaps".to_owned())?;
    // The whisker of the three repeats (three segments); one run has none.
    ensure(svg.matches("<polyline").count() >= 3, || {
        "no whisker".to_owned()
    })
}

fn flat_json() -> Result<(), String> {
    let m = attempt(100.0, 1.0)?.measurement.ok_or("measured")?;
    let json = serde_json::to_value(&m).map_err(|e| e.to_string())?;
    // results.json's readers see the shared answers and the row check beside the rates.
    for key in [
        "rps",
        "requests",
        "seconds",
        "errors",
        "non_2xx",
        "inserts_acked",
    ] {
        ensure(json.get(key).is_some(), || format!("no {key} in {json}"))?;
    }
    ensure(json.get("answers").is_none(), || format!("nested: {json}"))
}
