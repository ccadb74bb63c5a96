//! End-to-end tests of the `distlock` binary.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_distlock");

/// `distlock` with its default store in `dir` (no URL from the environment).
fn distlock(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env("XDG_RUNTIME_DIR", dir)
        .env_remove("DISTLOCK_URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("distlock runs")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not signalled")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("distlock did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_file(path: &Path, limit: Duration) -> String {
    let until = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_owned();
        }
        assert!(Instant::now() < until, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A unique resource name, so runs against shared stores never collide.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("distlock-cli-test/{name}/{}-{nanos}", std::process::id())
}

#[test]
fn exit_code_is_passed_through_and_the_command_sees_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(distlock(dir.path()).args(["lock", "job", "--", "sh", "-c", "exit 7"]));
    assert_eq!(code(&out), 7, "{}", stderr(&out));

    let out = run(distlock(dir.path()).args([
        "lock",
        "job",
        "--data",
        "hello",
        "--",
        "sh",
        "-c",
        "echo \"$DISTLOCK_RESOURCE $DISTLOCK_TOKEN ${#DISTLOCK_LEASE_KEY} $DISTLOCK_URL\"",
    ]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    let fields: Vec<&str> = first.split(' ').collect();
    assert_eq!(fields[0], "job");
    assert!(
        fields[1].parse::<u64>().unwrap() >= 2,
        "second grant: {first}"
    );
    assert_eq!(fields[2], "32", "a 32-digit lease key: {first}");
    assert!(fields[3].starts_with("sqlite://"), "{first}");
    assert!(fields[3].contains(dir.path().to_str().unwrap()), "{first}");

    let out = run(distlock(dir.path()).args(["lock", "job", "--", "no-such-command-xyz"]));
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    let out = run(distlock(dir.path()).args(["info", "job"]));
    assert_eq!(code(&out), 1, "released after every run: {}", stderr(&out));
}

#[test]
fn data_is_readable_while_held() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("\"{BIN}\" read job");
    let out = run(distlock(dir.path()).args([
        "lock",
        "job",
        "--data",
        "payload 42",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "payload 42");
}

/// Two `distlock lock same -- …` at once: the second waits for the first.
fn no_overlap(url: Option<&str>, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let script = format!(
        "echo \"start $(date +%s.%N)\" >> {log}; sleep 1; echo \"end $(date +%s.%N)\" >> {log}",
        log = log.display()
    );
    let started = Instant::now();
    let spawn = || {
        let mut command = distlock(dir.path());
        if let Some(url) = url {
            command.args(["--url", url]);
        }
        command
            .args(["lock", name, "--", "sh", "-c", &script])
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    let (sa, sb) = (
        wait_timeout(&mut a, Duration::from_secs(60)),
        wait_timeout(&mut b, Duration::from_secs(60)),
    );
    assert!(sa.success() && sb.success(), "{sa} {sb}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the runs were serialised: {:?}",
        started.elapsed()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<(String, f64)> = text
        .lines()
        .map(|line| {
            let (kind, at) = line.split_once(' ').unwrap();
            (kind.to_owned(), at.parse().unwrap())
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["start", "end", "start", "end"],
        "never overlapped: {text}"
    );
    assert!(events[1].1 <= events[2].1, "{text}");
}

#[test]
fn two_concurrent_locks_on_the_default_store_never_overlap() {
    no_overlap(None, "same");
}

fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{var} is not set and CI is: the test must not be skipped"
            );
            eprintln!("\n!!!!! SKIPPED: {var} is not set (source /tmp/services.env) !!!!!\n");
            None
        }
    }
}

#[test]
fn two_concurrent_locks_on_redis_never_overlap() {
    if let Some(url) = service_url("DISTLOCK_REDIS_URL") {
        no_overlap(Some(&url), &unique("redis"));
    }
}

#[test]
fn two_concurrent_locks_on_postgres_never_overlap() {
    if let Some(url) = service_url("DISTLOCK_POSTGRES_URL") {
        no_overlap(Some(&url), &unique("postgres"));
    }
}

#[test]
fn a_lost_lock_terminates_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let key_file: PathBuf = dir.path().join("key");
    let script = format!(
        "echo $DISTLOCK_LEASE_KEY > {}; exec sleep 60",
        key_file.display()
    );
    let started = Instant::now();
    let mut holder = distlock(dir.path())
        .args(["lock", "job", "--ttl", "1s", "--kill-after", "5s", "--"])
        .args(["sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let key = wait_for_file(&key_file, Duration::from_secs(30));
    let out = run(distlock(dir.path()).args(["release", "job", "--force", "--yes", "--key", &key]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let status = wait_timeout(&mut holder, Duration::from_secs(30));
    assert_eq!(status.code(), Some(79), "lost: {status}");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "not the sleep's end"
    );

    let out = run(distlock(dir.path()).args(["release", "job", "--yes", "--key", &key]));
    assert_eq!(code(&out), 1, "the key holds nothing now: {}", stderr(&out));
    let out = run(distlock(dir.path()).args(["release", "job", "--yes"]));
    assert_eq!(
        code(&out),
        64,
        "neither a key nor --force: {}",
        stderr(&out)
    );
}

#[test]
fn force_release_by_name_kills_the_holder_and_fences_it() {
    let dir = tempfile::tempdir().unwrap();
    let token_file: PathBuf = dir.path().join("token");
    let script = format!(
        "echo $DISTLOCK_TOKEN > {}; exec sleep 60",
        token_file.display()
    );
    let started = Instant::now();
    let mut holder = distlock(dir.path())
        .args(["lock", "job", "--ttl", "1s", "--kill-after", "5s", "--"])
        .args(["sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first: u64 = wait_for_file(&token_file, Duration::from_secs(30))
        .parse()
        .unwrap();
    let out = run(distlock(dir.path()).args(["release", "job", "--force", "--yes"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let status = wait_timeout(&mut holder, Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(79),
        "the evicted holder lost its lock: {status}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "not the sleep's end"
    );
    let out = run(distlock(dir.path()).args(["release", "job", "--force", "--yes"]));
    assert_eq!(code(&out), 1, "nothing left to release: {}", stderr(&out));
    let out =
        run(distlock(dir.path()).args(["lock", "job", "--", "sh", "-c", "echo $DISTLOCK_TOKEN"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let next: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        next > first,
        "the next grant is fenced above the evicted one: {next} > {first}"
    );
}

#[test]
fn json_output_parses() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let script = format!("echo > {}; exec sleep 30", ready.display());
    let mut holder = distlock(dir.path())
        .args(["lock", "jobs/a", "--owner", "tester", "--"])
        .args(["sh", "-c", &script])
        .spawn()
        .unwrap();
    wait_for_file(&ready, Duration::from_secs(30));

    let out = run(distlock(dir.path()).args(["list", "--json"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["resource"], "jobs/a");
    assert_eq!(list[0]["owner"], "tester");
    assert!(list[0]["token"].as_u64().is_some());

    let out = run(distlock(dir.path()).args(["list", "nothing/", "--json"]));
    let empty: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(empty, serde_json::json!([]));

    let out = run(distlock(dir.path()).args(["info", "jobs/a", "--json"]));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["holders"][0]["owner"], "tester");
    assert_eq!(info["permits"], 1);

    let out = run(distlock(dir.path()).args(["info", "jobs/b", "--json"]));
    assert_eq!(code(&out), 1);
    let free: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(free.is_null());

    // Held: --no-wait and a bounded wait give up with 75.
    let out = run(distlock(dir.path()).args(["lock", "-n", "jobs/a", "--", "true"]));
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    let out = run(distlock(dir.path()).args(["lock", "--wait", "300ms", "jobs/a", "--", "true"]));
    assert_eq!(code(&out), 75, "{}", stderr(&out));

    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn a_wrong_url_is_one_readable_line_and_its_own_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    for (url, expected) in [
        ("redis://127.0.0.1:1", 69),
        ("nosuchscheme://x", 64),
        ("not a url", 64),
    ] {
        let out = run(distlock(dir.path()).args(["--url", url, "lock", "x", "--", "true"]));
        assert_eq!(code(&out), expected, "{url}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("distlock: error:"), "{err}");
    }
    let out = run(distlock(dir.path()).args(["lock", "x"]));
    assert_eq!(code(&out), 64, "no command: usage");
    let out = run(distlock(dir.path()).args(["lock", "--ttl", "soon", "x", "--", "true"]));
    assert_eq!(code(&out), 64, "bad duration: usage");
}

#[test]
fn sigint_is_passed_to_the_command_and_the_lock_released() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let script = format!("echo > {}; exec sleep 30", ready.display());
    let started = Instant::now();
    let mut holder = distlock(dir.path())
        .args(["lock", "job", "--"])
        .args(["sh", "-c", &script])
        .spawn()
        .unwrap();
    wait_for_file(&ready, Duration::from_secs(30));
    let out = run(distlock(dir.path()).args(["info", "job"]));
    assert_eq!(code(&out), 0, "held: {}", stderr(&out));

    let kill = Command::new("kill")
        .args(["-INT", &holder.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_timeout(&mut holder, Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(130),
        "the command died of SIGINT: {status}"
    );
    assert!(started.elapsed() < Duration::from_secs(25));
    let out = run(distlock(dir.path()).args(["info", "job"]));
    assert_eq!(code(&out), 1, "released: {}", stderr(&out));
}

#[test]
fn completions_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(distlock(dir.path()).args(["completions", "bash"]));
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("distlock"));
    let out = run(distlock(dir.path()).args(["--help"]));
    assert_eq!(code(&out), 0);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Exit codes") && help.contains("79"), "{help}");
    let out = run(distlock(dir.path()).args(["frobnicate"]));
    assert_eq!(code(&out), 64);
}

#[test]
fn doctor_passes_on_the_default_store() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(distlock(dir.path()).args(["doctor"]));
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{report}");
    // SQLite's clock is this machine's: the offset is measured and small.
    assert!(
        report.contains("clock") && report.contains("ms from this machine"),
        "{report}"
    );
    let out = run(distlock(dir.path()).args(["doctor", "redis://127.0.0.1:1"]));
    assert_eq!(code(&out), 69);
    assert!(String::from_utf8_lossy(&out.stdout).contains("fix"));
}

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    // An ignored SIGTERM is inherited across exec: only SIGKILL ends the sleep.
    let script = format!(
        "trap '' TERM; echo $DISTLOCK_LEASE_KEY > {}; exec sleep 60",
        key_file.display()
    );
    let started = Instant::now();
    let mut holder = distlock(dir.path())
        .args(["lock", "job", "--ttl", "1s", "--kill-after", "1s", "--"])
        .args(["sh", "-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let key = wait_for_file(&key_file, Duration::from_secs(30));
    let out = run(distlock(dir.path()).args(["release", "job", "--yes", "--key", &key]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let status = wait_timeout(&mut holder, Duration::from_secs(30));
    assert_eq!(status.code(), Some(79), "{status}");
    assert!(started.elapsed() < Duration::from_secs(40));
}

#[test]
fn watch_prints_grants_and_releases() {
    let dir = tempfile::tempdir().unwrap();
    let watcher = distlock(dir.path())
        .args(["watch", "w", "--json", "--interval", "50ms", "--for", "4s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let out = run(distlock(dir.path()).args(["lock", "w", "--owner", "first", "--", "sleep", "1"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = watcher.wait_with_output().unwrap();
    assert_eq!(code(&out), 0);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds, ["granted", "released"], "{events:?}");
    assert_eq!(events[0]["owner"], "first");
}

#[test]
fn bench_prints_figures() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(distlock(dir.path()).args([
        "bench",
        "--cycles",
        "5",
        "--handoffs",
        "2",
        "--concurrency",
        "2",
        "--duration",
        "300ms",
        "--json",
    ]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(figures["backend"], "sqlite");
    assert_eq!(figures["cycle_ms"]["n"], 5);
    assert!(figures["throughput"]["ops_per_s"].as_f64().unwrap() > 0.0);
    let out = run(distlock(dir.path()).args(["list", "--json"]));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([]),
        "bench leaves no lock behind"
    );
}

/// `distlock serve` starts a lock server; another `distlock` holds a lock
/// through it (`distlock://`), and the token reaches the command.
#[cfg(feature = "server")]
#[test]
fn serve_runs_a_lock_server_that_clients_lock_through() {
    use std::io::{BufRead, BufReader};

    let dir = tempfile::tempdir().unwrap();
    let mut server = distlock(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--store", "memory://"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        if let Some(address) = line.strip_prefix("listening on ") {
            break address.trim().to_owned();
        }
    };
    let url = format!("distlock://{address}");
    let out = run(distlock(dir.path()).args([
        "--url",
        &url,
        "lock",
        "served",
        "--",
        "sh",
        "-c",
        "echo $DISTLOCK_TOKEN",
    ]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let token: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(token > 0);
    let out = run(distlock(dir.path()).args(["--url", &url, "info", "served"]));
    assert_eq!(
        code(&out),
        1,
        "released after the command: {}",
        stderr(&out)
    );
    let _ = server.kill();
    let _ = server.wait();
}
