//! Log lines in logrus's formats (what runc writes and containerd's shim reads back from
//! `--log` files: JSON objects with `level`, `msg` and `time`, or `key=value` text).

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Where log lines go and how they look.
pub struct LogrusLayer {
    out: Mutex<Box<dyn Write + Send>>,
    json: bool,
    max: Level,
}

impl LogrusLayer {
    /// Logs to `file` (or stderr) in JSON or text, up to `max`.
    pub fn new(file: Option<File>, json: bool, max: Level) -> Self {
        let out: Box<dyn Write + Send> = match file {
            Some(f) => Box::new(f),
            None => Box::new(std::io::stderr()),
        };
        Self {
            out: Mutex::new(out),
            json,
            max,
        }
    }
}

#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        if field.name() == "message" {
            self.msg = v;
        } else {
            self.rest.push((field.name().to_string(), v));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.rest
                .push((field.name().to_string(), value.to_string()));
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S: Subscriber> Layer<S> for LogrusLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() > self.max {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let level = level_name(event.metadata().level());
        let time = strata_runtime::state::now_rfc3339();
        let line = if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("level".into(), level.into());
            obj.insert("msg".into(), f.msg.into());
            obj.insert("time".into(), time.into());
            for (k, v) in f.rest {
                obj.insert(k, v.into());
            }
            serde_json::Value::Object(obj).to_string()
        } else {
            let mut s = format!("time={time:?} level={level} msg={:?}", f.msg);
            for (k, v) in f.rest {
                let _ = write!(s, " {k}={v:?}");
            }
            s
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }
}
