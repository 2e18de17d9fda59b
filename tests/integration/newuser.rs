//! What a new user meets first (issue 11): help that keeps passwords to
//! itself, `dlab clean`, side-by-side tables that keep names whole, `compare`
//! flags that clap lists and checks, `dlab up` that fails whole, the compose
//! file held to the private relay's timing, the licence files, and the
//! scenario schema.

use crate::support::{dlab, plan, run, scenarios, show, temp_dir, text};
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn help_never_prints_the_urls_in_the_environment() {
    let home = temp_dir("help");
    for sub in ["run", "matrix", "compare"] {
        let out = dlab(&home)
            .args([sub, "--help"])
            .env("DLAB_AMQP_URL", "amqp://u:s3cret@h:5672/%2f")
            .env("DLAB_SMTP_URL", "smtp://u:t0psecret@h:25")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let help = text(&out.stdout);
        // The variables are still named, their values are not.
        assert!(help.contains("DLAB_AMQP_URL"), "{sub}: {help}");
        assert!(help.contains("DLAB_SMTP_URL"), "{sub}: {help}");
        assert!(
            !help.contains("s3cret"),
            "{sub} --help shows the AMQP password: {help}"
        );
        assert!(
            !help.contains("t0psecret"),
            "{sub} --help shows the SMTP password: {help}"
        );
    }
}

#[test]
fn compare_lists_its_guarantees_and_clap_refuses_bad_values() {
    let home = temp_dir("compare-args");
    let out = dlab(&home).args(["compare", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let help = text(&out.stdout);
    assert!(
        help.contains("possible values: at-most-once, at-least-once, exactly-once")
            || (help.contains("at-most-once:")
                && help.contains("at-least-once:")
                && help.contains("exactly-once:")),
        "{help}"
    );
    assert!(help.contains("--outage <DURATION>"), "{help}");

    let out = dlab(&home)
        .args(["compare", "--guarantee", "twice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid value 'twice' for '--guarantee <GUARANTEE>'"),
        "{err}"
    );
    assert!(
        err.contains("[possible values: at-most-once, at-least-once, exactly-once]"),
        "{err}"
    );

    let out = dlab(&home)
        .args(["compare", "--outage", "3x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid value '3x' for '--outage <DURATION>'"),
        "{err}"
    );
    assert!(err.contains("unknown unit"), "{err}");
    assert!(!home.join("runs").exists(), "nothing ran");
}

/// Sets the modification time of `path` and everything under it to `ago`.
fn age(path: &Path, ago: &str) {
    let out = Command::new("find")
        .arg(path)
        .args(["-exec", "touch", "-h", "-d", ago, "{}", "+"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn clean_removes_old_runs_and_never_what_up_uses() {
    let home = temp_dir("clean");
    let runs = home.join("runs");
    for (run, bytes) in [
        ("old1", 300_000),
        ("old2", 5_000),
        ("new1", 1_000),
        ("busy", 10),
    ] {
        std::fs::create_dir_all(runs.join(run).join("relay")).unwrap();
        std::fs::write(runs.join(run).join("effects.sqlite"), vec![7u8; bytes]).unwrap();
    }
    for keep in ["broker", "relay"] {
        std::fs::create_dir_all(home.join(keep)).unwrap();
        std::fs::write(home.join(keep).join("state.json"), "{}").unwrap();
    }
    age(&runs.join("old1"), "3 days ago");
    age(&runs.join("old2"), "2 days ago");
    age(&runs.join("busy"), "3 days ago");
    age(&home.join("broker"), "30 days ago");
    age(&home.join("relay"), "30 days ago");
    // A run in progress: this process has a file open in it.
    let _open = std::fs::File::open(runs.join("busy").join("effects.sqlite")).unwrap();

    let out = dlab(&home)
        .args(["clean", "--older-than", "1d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let said = text(&out.stdout);
    assert!(
        !runs.join("old1").exists() && !runs.join("old2").exists(),
        "{said}"
    );
    assert!(runs.join("new1").exists(), "a run of today is kept: {said}");
    assert!(runs.join("busy").exists(), "a run in use is kept: {said}");
    assert!(
        said.contains(&runs.join("old1").display().to_string()),
        "{said}"
    );
    assert!(
        said.contains(&runs.join("old2").display().to_string()),
        "{said}"
    );
    assert!(said.contains("removed 2 run(s)"), "{said}");
    // 305,000 bytes of files (297.9 KiB) plus the directories themselves.
    let freed: f64 = said
        .split("removed 2 run(s), ")
        .nth(1)
        .and_then(|rest| rest.split(" KiB freed").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("how much was freed: {said}"));
    assert!((297.8..400.0).contains(&freed), "{freed} KiB: {said}");

    let out = dlab(&home).args(["clean", "--all"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!runs.join("new1").exists(), "{}", show(&out));
    assert!(runs.join("busy").exists(), "{}", show(&out));
    for keep in ["broker", "relay"] {
        assert!(
            home.join(keep).join("state.json").exists(),
            "{keep} is dlab up's: {}",
            show(&out)
        );
    }

    let out = dlab(&home).arg("clean").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "clean needs --older-than or --all: {}",
        show(&out)
    );
    assert!(runs.join("busy").exists());
}

#[test]
fn report_side_by_side_keeps_names_that_differ_at_their_end() {
    let r = run(&plan("at-least-once.toml", &["messages=50"]));
    let dir = temp_dir("side-by-side");
    let names = [
        "at-least-once-crash-after-effect",
        "at-least-once-crash-before-effect",
    ];
    let mut files = Vec::new();
    for name in names {
        let mut v = serde_json::to_value(&r).unwrap();
        v["scenario"] = serde_json::json!(name);
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
        files.push(file);
    }
    let out = dlab(&dir).arg("report").args(&files).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let table = text(&out.stdout);
    let scenario_row = table
        .lines()
        .find(|l| l.starts_with("scenario"))
        .expect("a scenario row");
    for name in names {
        assert!(scenario_row.contains(name), "{name} in full: {table}");
    }
}

#[test]
fn up_fails_whole_when_its_relay_cannot_start() {
    /// Whatever happens, `dlab down` for this home at the end.
    struct Down<'a>(&'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = dlab(self.0).arg("down").output();
        }
    }
    let home = temp_dir("up-no-relay");
    // An unusable relay directory: a file where the relay's directory goes.
    std::fs::write(home.join("relay"), "not a directory\n").unwrap();
    let _down = Down(&home);
    let out = dlab(&home).arg("up").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("the SMTP relay failed to start"), "{err}");
    assert!(
        err.contains(&home.join("relay").display().to_string()),
        "names the path: {err}"
    );
    assert!(
        err.contains("stopped the RabbitMQ node it had started"),
        "{err}"
    );
    assert!(!home.join("broker").join("state.json").exists(), "{err}");
    // No process of that node left: its command line names the home.
    let left = Command::new("pgrep")
        .args(["-f", &home.join("broker").display().to_string()])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "still running: {}",
        text(&left.stdout)
    );
    assert!(
        !text(&out.stdout).contains("amqp://"),
        "no URL of a node that is gone: {}",
        show(&out)
    );
}

/// What is wrong with a compose file: a relay timing that is not the private
/// relay's, or an image without a pinned version.
fn compose_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
    };
    for (param, wanted) in dlab::relay::RETRY_TIMING {
        match value(&format!("POSTFIX_{param}")) {
            Some(v) if v == wanted => {}
            other => problems.push(format!("POSTFIX_{param} is {other:?}, not {wanted}")),
        }
    }
    let images: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image:"))
        .map(str::trim)
        .collect();
    if images.is_empty() {
        problems.push("no image".into());
    }
    for image in images {
        // A full version before any variant: 4.2.9-management, v5.2.1-alpine.
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        let version = tag.split('-').next().unwrap_or("");
        let parts: Vec<&str> = version
            .strip_prefix('v')
            .unwrap_or(version)
            .split('.')
            .collect();
        let pinned = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !pinned {
            problems.push(format!("{image} has no pinned version tag"));
        }
    }
    problems
}

#[test]
fn compose_relay_retries_like_the_private_relay_and_images_are_pinned() {
    let text = std::fs::read_to_string(repo().join("compose.yaml")).unwrap();
    let problems = compose_problems(&text);
    assert!(problems.is_empty(), "compose.yaml: {problems:?}");
    // The check can fail: the old file's 1s backoff and floating tags.
    let old = text
        .replace(
            "POSTFIX_minimal_backoff_time: \"2s\"",
            "POSTFIX_minimal_backoff_time: \"1s\"",
        )
        .replace("boky/postfix:v5.2.1-alpine", "boky/postfix:latest")
        .replace("rabbitmq:4.2.9-management", "rabbitmq:3.10-management");
    let found = compose_problems(&old);
    for what in [
        "POSTFIX_minimal_backoff_time",
        "boky/postfix:latest",
        "rabbitmq:3.10-management",
    ] {
        assert!(found.iter().any(|p| p.contains(what)), "{what}: {found:?}");
    }
    assert!(
        compose_problems(&text.replace("boky/postfix:v5.2.1-alpine", "boky/postfix")).len() == 1
    );
}

#[test]
fn both_licence_files_are_there_and_cargo_names_both() {
    let mit = std::fs::read_to_string(repo().join("LICENSE-MIT")).unwrap();
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    assert!(mit.contains("the dlab developers"));
    let apache = std::fs::read_to_string(repo().join("LICENSE-APACHE")).unwrap();
    assert!(apache.contains("Apache License"));
    assert!(apache.contains("Version 2.0, January 2004"));
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
    let cargo: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    assert_eq!(
        cargo["package"]["license"].as_str(),
        Some("MIT OR Apache-2.0")
    );
}

fn scenario_schema() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo().join("schema/scenario.schema.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn the_committed_scenario_schema_is_the_one_the_code_generates() {
    let out = Command::new(env!("CARGO_BIN_EXE_dlab"))
        .args(["schema", "--scenario"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        generated,
        scenario_schema(),
        "run `dlab schema --scenario > schema/scenario.schema.json` and commit it"
    );
}

#[test]
fn every_shipped_scenario_validates_against_the_scenario_schema() {
    let validator = jsonschema::validator_for(&scenario_schema()).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(scenarios()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let value: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let json = serde_json::to_value(value).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        checked += 1;
    }
    assert!(checked >= 30, "{checked} scenarios");
    // The schema can fail: a typo'd key, a wrong type, an unknown fault kind.
    for bad in [
        "guarantee = \"at-least-once\"\nmesages = 10\n",
        "guarantee = \"at-least-once\"\nmessages = \"many\"\n",
        "guarantee = \"at-least-once\"\n[[faults]]\nkind = \"meteor\"\n",
        "guarantee = \"twice\"\n",
    ] {
        let value: toml::Value = toml::from_str(bad).unwrap();
        assert!(
            !validator.is_valid(&serde_json::to_value(value).unwrap()),
            "{bad}"
        );
    }
}
