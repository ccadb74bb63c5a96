//! `list`, `info`, `read`, `release`, `watch`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::SystemTime;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use distlock::{Holder, Info, LeaseKey, Locker};
use serde_json::{Value, json};

use crate::cli::{ReleaseArgs, WatchArgs};
use crate::exit::{self, Failure};
use crate::output::{Output, rfc3339, short, since, unix_ms, until};
use crate::store;

async fn connect(url: Option<&str>) -> Result<Arc<dyn Locker>, Failure> {
    let url = store::resolve(url)?;
    Ok(store::connect(&url).await?.0)
}

fn holder_json(holder: &Holder) -> Value {
    json!({
        "owner": holder.owner,
        "token": holder.token,
        "acquired_at": rfc3339(holder.acquired_at),
        "acquired_at_ms": unix_ms(holder.acquired_at),
        "expires_at": rfc3339(holder.expires_at),
        "expires_at_ms": unix_ms(holder.expires_at),
    })
}

pub(crate) fn info_json(info: &Info) -> Value {
    json!({
        "resource": info.resource,
        "permits": info.permits,
        "owner": info.owner(),
        "token": info.token(),
        "holders": info.holders.iter().map(holder_json).collect::<Vec<_>>(),
    })
}

fn print_json(value: &Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new(exit::SOFTWARE, e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    table
}

pub(crate) async fn list(
    url: Option<&str>,
    prefix: &str,
    json: bool,
    out: &Output,
) -> Result<u8, Failure> {
    let locker = connect(url).await?;
    let names = locker.list(prefix).await?;
    let mut infos = Vec::with_capacity(names.len());
    for name in names {
        // A lock may be released between list and info: skip it then.
        if let Some(info) = locker.info(&name).await? {
            infos.push(info);
        }
    }
    if json {
        print_json(&Value::Array(infos.iter().map(info_json).collect()))?;
        return Ok(exit::OK);
    }
    if infos.is_empty() {
        out.note(&if prefix.is_empty() {
            "no locks held".to_owned()
        } else {
            format!("no locks held under `{prefix}`")
        });
        return Ok(exit::OK);
    }
    let mut table = table(&[
        "RESOURCE",
        "HOLDERS",
        "OWNER",
        "TOKEN",
        "HELD FOR",
        "EXPIRES IN",
    ]);
    for info in &infos {
        table.add_row(vec![
            info.resource.clone(),
            format!("{}/{}", info.holders.len(), info.permits),
            info.owner().unwrap_or_default().to_owned(),
            info.token().map(|t| t.to_string()).unwrap_or_default(),
            info.lock_time()
                .map(|t| short(since(t)))
                .unwrap_or_default(),
            info.expire_time()
                .map(|t| short(until(t)))
                .unwrap_or_default(),
        ]);
    }
    println!("{table}");
    Ok(exit::OK)
}

pub(crate) async fn info(
    url: Option<&str>,
    name: &str,
    json: bool,
    out: &Output,
) -> Result<u8, Failure> {
    let locker = connect(url).await?;
    let info = locker.info(name).await?;
    if json {
        print_json(&info.as_ref().map_or(Value::Null, info_json))?;
        return Ok(if info.is_some() {
            exit::OK
        } else {
            exit::NOT_FOUND
        });
    }
    let Some(info) = info else {
        out.note(&format!("`{name}` is free"));
        return Ok(exit::NOT_FOUND);
    };
    println!(
        "{} is held by {} of {} permit(s)",
        info.resource,
        info.holders.len(),
        info.permits
    );
    let mut table = table(&["OWNER", "TOKEN", "SINCE", "HELD FOR", "EXPIRES IN"]);
    for holder in &info.holders {
        table.add_row(vec![
            holder.owner.clone(),
            holder.token.to_string(),
            rfc3339(holder.acquired_at),
            short(since(holder.acquired_at)),
            short(until(holder.expires_at)),
        ]);
    }
    println!("{table}");
    Ok(exit::OK)
}

pub(crate) async fn read(
    url: Option<&str>,
    name: &str,
    json: bool,
    out: &Output,
) -> Result<u8, Failure> {
    let locker = connect(url).await?;
    let data = locker.read(name).await?;
    if json {
        let value = match &data {
            Some(bytes) => json!({
                "resource": name,
                "data": String::from_utf8_lossy(bytes),
                "bytes": bytes.len(),
            }),
            None => Value::Null,
        };
        print_json(&value)?;
    } else if let Some(bytes) = &data {
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(bytes);
        if stdout.is_terminal() && !bytes.ends_with(b"\n") {
            let _ = writeln!(stdout);
        }
    } else {
        out.note(&format!("`{name}` is free"));
    }
    Ok(if data.is_some() {
        exit::OK
    } else {
        exit::NOT_FOUND
    })
}

pub(crate) async fn release(
    url: Option<&str>,
    args: ReleaseArgs,
    out: &Output,
) -> Result<u8, Failure> {
    let Some(key) = &args.key else {
        if !args.force {
            return Err(Failure::usage(format!(
                "releasing `{}` needs the holder's lease key (--key KEY, the holder's \
                 DISTLOCK_LEASE_KEY), or --force to end every lease of it by name",
                args.name
            )));
        }
        return force_release(url, &args, out).await;
    };
    let key = LeaseKey::parse(key.trim()).map_err(Failure::from)?;
    let locker = connect(url).await?;
    if !confirmed(
        &*locker,
        &args,
        &format!("Release the lease of key {key:?}?"),
    )
    .await?
    {
        out.note("not released");
        return Ok(exit::NOT_FOUND);
    }
    match locker.release(&args.name, key).await {
        Ok(()) => {
            out.note(&format!("released `{}`", args.name));
            Ok(exit::OK)
        }
        Err(distlock::Error::NotHeld { .. }) => {
            out.error(&format!(
                "that key holds nothing on `{}` (released, expired or wrong key)",
                args.name
            ));
            Ok(exit::NOT_FOUND)
        }
        Err(error) => Err(error.into()),
    }
}

/// Whether to go on: yes with `--yes` or when nobody is at a terminal;
/// otherwise the user is shown who holds the lock and asked `question`.
async fn confirmed(
    locker: &dyn distlock::Locker,
    args: &ReleaseArgs,
    question: &str,
) -> Result<bool, Failure> {
    if args.yes || !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    let what = match locker.info(&args.name).await? {
        Some(info) => format!(
            "`{}` is held by {} holder(s), first {} (token {})",
            info.resource,
            info.holders.len(),
            info.owner().unwrap_or("?"),
            info.token().unwrap_or_default()
        ),
        None => format!("`{}` is free", args.name),
    };
    eprint!("{what}. {question} [y/N] ");
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES"))
}

/// `release --force NAME`: end every lease of the resource without keys; the
/// next grant's token is higher, so the evicted holders are fenced.
async fn force_release(url: Option<&str>, args: &ReleaseArgs, out: &Output) -> Result<u8, Failure> {
    let locker = connect(url).await?;
    if !confirmed(&*locker, args, "End every lease of it?").await? {
        out.note("not released");
        return Ok(exit::NOT_FOUND);
    }
    match locker.force_release(&args.name).await? {
        0 => {
            out.error(&format!("`{}` was not held", args.name));
            Ok(exit::NOT_FOUND)
        }
        ended => {
            out.note(&format!(
                "released `{}` ({ended} lease(s) ended; the next holder's token is higher)",
                args.name
            ));
            Ok(exit::OK)
        }
    }
}

/// One change seen by `watch`.
fn event(out: &Output, json: bool, kind: &str, resource: &str, holder: &Holder) {
    let now = SystemTime::now();
    if json {
        let mut value = holder_json(holder);
        if let Value::Object(map) = &mut value {
            map.insert("event".into(), json!(kind));
            map.insert("resource".into(), json!(resource));
            map.insert("at".into(), json!(rfc3339(now)));
        }
        println!("{value}");
    } else {
        let color = match kind {
            "granted" | "held" => "32",
            "released" => "36",
            _ => "33",
        };
        println!(
            "{}  {:<8} {resource}  owner {}  token {}",
            rfc3339(now),
            out.paint(color, kind),
            holder.owner,
            holder.token
        );
    }
    let _ = std::io::stdout().flush();
}

pub(crate) async fn watch(url: Option<&str>, args: WatchArgs, out: &Output) -> Result<u8, Failure> {
    let locker = connect(url).await?;
    let name = args.name.as_str();
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut known: Option<BTreeMap<u64, Holder>> = None;
    let mut failing = false;
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    out.note(&format!("watching `{name}` (Ctrl-C to stop)"));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(exit::OK),
            () = &mut stop => return Ok(exit::OK),
        }
        let now = SystemTime::now();
        let current: BTreeMap<u64, Holder> = match locker.info(name).await {
            Ok(info) => {
                if failing {
                    out.note("the store answers again");
                    failing = false;
                }
                info.map(|i| i.holders.into_iter().map(|h| (h.token, h)).collect())
                    .unwrap_or_default()
            }
            Err(error) => {
                if !failing {
                    out.warn(&exit::one_line(&error));
                    failing = true;
                }
                continue;
            }
        };
        match &known {
            None => {
                if current.is_empty() {
                    out.note(&format!("`{name}` is free"));
                }
                for holder in current.values() {
                    event(out, args.json, "held", name, holder);
                }
            }
            Some(before) => {
                for (token, holder) in before {
                    if !current.contains_key(token) {
                        let kind = if now >= holder.expires_at {
                            "expired"
                        } else {
                            "released"
                        };
                        event(out, args.json, kind, name, holder);
                    }
                }
                for (token, holder) in &current {
                    if !before.contains_key(token) {
                        event(out, args.json, "granted", name, holder);
                    }
                }
            }
        }
        known = Some(current);
    }
}
