//! `strata events [--since T] [--until T] [--filter KEY=VALUE]...`: the engine's events as they
//! happen, one line each as Docker prints them.

use std::time::{SystemTime, UNIX_EPOCH};

use strata_proto::engine::{Event, EventsRequest};

use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show events since a time: RFC 3339, Unix seconds, or a duration before now (10m, 1h30m)
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until a time (same forms as --since)
    #[arg(long)]
    pub until: Option<String>,
    /// Only matching events (type=, event=, container=, image=, volume=, label=)
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A duration like "90s", "10m", "1h30m", "2.5h".
fn parse_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut any = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += num.parse::<f64>().ok()? * unit;
        num.clear();
        any = true;
    }
    (any && num.is_empty()).then_some(total)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)" as nanoseconds since the epoch.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else {
        let i = time.rfind(['+', '-'])?;
        let (c, o) = time.split_at(i);
        let (oh, om) = o[1..].split_once(':')?;
        let secs = oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60;
        (c, if o.starts_with('-') { -secs } else { secs })
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.split(':');
    let (h, mi, se): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    let nanos = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}")[..9].parse::<i64>().ok()?
    };
    let secs = days_from_civil(y, m, day) * 86400 + h * 3600 + mi * 60 + se - offset;
    Some(secs * 1_000_000_000 + nanos)
}

/// A time as Docker's `--since` takes it, in nanoseconds since the epoch.
pub fn parse_time(s: &str, now: i64) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    if let Some(d) = parse_duration(s) {
        return Ok(now - (d * 1e9) as i64);
    }
    parse_rfc3339(s).ok_or_else(|| {
        format!("invalid time {s:?}: use RFC 3339 (2026-01-02T15:04:05Z), Unix seconds, or a duration like 10m")
    })
}

/// RFC 3339 with nanoseconds, in UTC.
fn format_time(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One event as Docker's CLI prints it.
pub fn line(e: &Event) -> String {
    let mut attrs: Vec<_> = e.attributes.iter().collect();
    attrs.sort();
    let attrs = attrs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} {} {} {} ({attrs})",
        format_time(e.time_nanos),
        e.r#type,
        e.action,
        e.id
    )
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let bad = |m: String| Failure::new(m).with_code(1);
    let now = now_nanos();
    let since = a
        .since
        .as_deref()
        .map(|s| parse_time(s, now))
        .transpose()
        .map_err(|m| bad(format!("--since: {m}")))?;
    let until = a
        .until
        .as_deref()
        .map(|s| parse_time(s, now))
        .transpose()
        .map_err(|m| bad(format!("--until: {m}")))?;
    let mut s = client
        .system()
        .events(EventsRequest {
            since_nanos: since.unwrap_or(0).max(i64::from(since.is_some())),
            until_nanos: until.unwrap_or(0),
            filters: a.filter,
        })
        .await?
        .into_inner();
    while let Some(e) = s.message().await? {
        println!("{}", line(&e));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form() {
        let now = 1_800_000_000 * 1_000_000_000;
        assert_eq!(parse_time("10m", now).unwrap(), now - 600 * 1_000_000_000);
        assert_eq!(
            parse_time("1h30m", now).unwrap(),
            now - 5400 * 1_000_000_000
        );
        assert_eq!(
            parse_time("1700000000", now).unwrap(),
            1_700_000_000 * 1_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000 * 1_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-15T00:13:20.5+02:00", now).unwrap(),
            1_700_000_000 * 1_000_000_000 + 500_000_000
        );
        let e = parse_time("yesterday", now).unwrap_err();
        assert!(e.contains("\"yesterday\""), "{e}");
    }

    #[test]
    fn formatted_as_docker_does() {
        let t = 1_700_000_000 * 1_000_000_000 + 5;
        assert_eq!(format_time(t), "2023-11-14T22:13:20.000000005Z");
        let e = Event {
            r#type: "container".into(),
            action: "start".into(),
            id: "abc".into(),
            attributes: [
                ("name".to_string(), "web".to_string()),
                ("image".into(), "busybox".into()),
            ]
            .into_iter()
            .collect(),
            time_nanos: t,
        };
        assert_eq!(
            line(&e),
            "2023-11-14T22:13:20.000000005Z container start abc (image=busybox, name=web)"
        );
    }
}
