//! The engine's event stream (`strata events`): what happened to containers, images and
//! volumes, in order. The last [`KEEP`] events are remembered so a client can ask for those
//! since a time; new ones are broadcast to every subscriber as they happen.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use strata_proto::engine::Event;
use tokio::sync::broadcast;

/// How many past events are kept for `--since` (Docker keeps 1024 too).
pub const KEEP: usize = 1024;

/// The engine's events.
#[derive(Debug)]
pub struct Events {
    past: Mutex<VecDeque<Event>>,
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            past: Mutex::new(VecDeque::with_capacity(KEEP)),
            tx: broadcast::channel(KEEP).0,
        }
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl Events {
    /// Records and broadcasts an event. `kind` is container, image or volume; `id` the
    /// container's or volume's id or the image's reference.
    pub fn emit<'a>(
        &self,
        kind: &str,
        action: &str,
        id: &str,
        attributes: impl IntoIterator<Item = (&'a str, String)>,
    ) {
        let mut past = self.past.lock().unwrap_or_else(|p| p.into_inner());
        // Times only go forward, so that `--since` of one event's time finds the later ones.
        let last = past.back().map_or(0, |e| e.time_nanos);
        let e = Event {
            r#type: kind.to_string(),
            action: action.to_string(),
            id: id.to_string(),
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            time_nanos: now_nanos().max(last + 1),
        };
        tracing::debug!(kind, action, id, "event");
        if past.len() == KEEP {
            past.pop_front();
        }
        past.push_back(e.clone());
        // Sent under the lock, so subscribers see events in the order they were remembered.
        let _ = self.tx.send(e);
    }

    /// The remembered events at or after `since_nanos` (none when 0) and a receiver of every
    /// later one, taken together so that none is missed or seen twice.
    pub fn subscribe(&self, since_nanos: i64) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let past = self.past.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        let old = if since_nanos > 0 {
            past.iter()
                .filter(|e| e.time_nanos >= since_nanos)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        (old, rx)
    }
}

/// Docker's event filters: values of one key match if any does; every key must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    by: HashMap<String, Vec<String>>,
}

impl Filter {
    /// Parses `key=value` filters (type, event, container, image, volume, label).
    pub fn parse(filters: &[String]) -> Result<Filter, String> {
        let mut by: HashMap<String, Vec<String>> = HashMap::new();
        for f in filters {
            let Some((k, v)) = f.split_once('=') else {
                return Err(format!("invalid filter {f:?}: expected key=value"));
            };
            let k = k.trim().to_ascii_lowercase();
            if !matches!(
                k.as_str(),
                "type" | "event" | "container" | "image" | "volume" | "label"
            ) {
                return Err(format!(
                    "invalid filter key {k:?}: use type, event, container, image, volume or label"
                ));
            }
            by.entry(k).or_default().push(v.to_string());
        }
        Ok(Filter { by })
    }

    /// Whether `e` passes.
    pub fn matches(&self, e: &Event) -> bool {
        self.by.iter().all(|(k, vals)| {
            vals.iter().any(|v| match k.as_str() {
                "type" => e.r#type == *v,
                "event" => e.action == *v || e.action.split(':').next() == Some(v.as_str()),
                "container" => {
                    e.r#type == "container"
                        && (e.id.starts_with(v.as_str())
                            || e.attributes.get("name").is_some_and(|n| n == v))
                }
                "image" => {
                    e.attributes.get("image").is_some_and(|i| i == v)
                        || (e.r#type == "image" && (e.id == *v || e.id.starts_with(v.as_str())))
                }
                "volume" => e.r#type == "volume" && e.id == *v,
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => e.attributes.get(lk).is_some_and(|x| x == lv),
                    None => e.attributes.contains_key(v.as_str()),
                },
                _ => false,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emit(ev: &Events, kind: &str, action: &str, id: &str, name: &str) {
        ev.emit(kind, action, id, [("name", name.to_string())]);
    }

    #[test]
    fn remembered_since_and_then_live_in_order() {
        let ev = Events::default();
        emit(&ev, "container", "create", "aa", "one");
        emit(&ev, "container", "start", "aa", "one");
        let (old, _) = ev.subscribe(0);
        assert!(old.is_empty(), "without since only new events come");
        let (old, mut rx) = ev.subscribe(1);
        let actions: Vec<_> = old.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["create", "start"]);
        assert!(old[0].time_nanos < old[1].time_nanos);
        emit(&ev, "container", "die", "aa", "one");
        assert_eq!(rx.try_recv().unwrap().action, "die");
        let (since_start, _) = ev.subscribe(old[1].time_nanos);
        assert_eq!(since_start.len(), 2);
    }

    #[test]
    fn only_the_last_events_are_kept() {
        let ev = Events::default();
        for i in 0..KEEP + 10 {
            emit(&ev, "container", "start", &i.to_string(), "x");
        }
        let (old, _) = ev.subscribe(1);
        assert_eq!(old.len(), KEEP);
        assert_eq!(old[0].id, "10");
    }

    #[test]
    fn filters_and_within_or_across() {
        let f = Filter::parse(&[
            "type=container".into(),
            "event=start".into(),
            "event=die".into(),
            "container=web".into(),
        ])
        .unwrap();
        let ev = Events::default();
        emit(&ev, "container", "start", "abc", "web");
        emit(&ev, "container", "die", "abc", "web");
        emit(&ev, "container", "create", "abc", "web");
        emit(&ev, "container", "start", "def", "db");
        emit(&ev, "volume", "create", "web", "web");
        let (old, _) = ev.subscribe(1);
        let seen: Vec<_> = old
            .iter()
            .filter(|e| f.matches(e))
            .map(|e| format!("{} {}", e.action, e.id))
            .collect();
        assert_eq!(seen, ["start abc", "die abc"]);
    }

    #[test]
    fn bad_filters_are_named() {
        let e = Filter::parse(&["colour=red".into()]).unwrap_err();
        assert!(e.contains("\"colour\""), "{e}");
        let e = Filter::parse(&["type".into()]).unwrap_err();
        assert!(e.contains("key=value"), "{e}");
    }
}
