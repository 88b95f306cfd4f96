//! Docker's `--format`: `table` (the default table), `json` (one JSON object per line), or a Go
//! template (`{{.ID}}\t{{.Names}}`), which with a `table ` prefix gets a header and aligned
//! columns. Templates run on the same objects `json` prints, with Docker's extra functions
//! (`json`, `join`, `split`, `lower`, `upper`, `title`, `truncate`); `\t` and `\n` in the
//! format are a tab and a newline, as in Docker.

use std::collections::HashMap;

use gtmpl::{Context, Func, FuncError, Template, Value};
use serde_json::Value as Json;

use crate::client::Failure;

/// A parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// The command's own table.
    Table,
    /// One JSON object per line.
    Json,
    /// A Go template for each object; `table`: with a header line and aligned columns.
    Template { text: String, table: bool },
}

impl Format {
    /// Reads `--format VALUE`.
    pub fn parse(s: &str) -> Format {
        let unescaped = s.replace("\\t", "\t").replace("\\n", "\n");
        match unescaped.trim() {
            "" | "table" => Format::Table,
            "json" | "{{json .}}" => Format::Json,
            t => match t.strip_prefix("table ") {
                Some(rest) => Format::Template {
                    text: rest.trim_start().to_string(),
                    table: true,
                },
                None => Format::Template {
                    text: unescaped,
                    table: false,
                },
            },
        }
    }
}

/// Refuses a `--format` whose template does not parse, before anything is asked of the engine.
pub fn check(format: &str) -> Result<(), Failure> {
    match Format::parse(format) {
        Format::Template { text, .. } => Compiled::new(&text).map(drop),
        _ => Ok(()),
    }
}

/// The template of an `inspect -f VALUE`: a Go template, or `json` (each object on a line of
/// its own); `None` without `-f` (the objects as one pretty JSON array).
pub fn inspect_template(format: Option<&str>) -> Result<Option<Compiled>, Failure> {
    match format.map(Format::parse) {
        Some(Format::Template { text, .. }) => Ok(Some(Compiled::new(&text)?)),
        Some(Format::Json) => Ok(Some(Compiled::new("{{json .}}")?)),
        _ => Ok(None),
    }
}

/// A template, parsed once, for many objects.
pub struct Compiled {
    tmpl: Template,
}

impl Compiled {
    /// Parses `text`; a bad template is refused in one line.
    pub fn new(text: &str) -> Result<Compiled, Failure> {
        let mut tmpl = Template::default();
        tmpl.add_funcs(&[
            ("json", json as Func),
            ("join", join as Func),
            ("split", split as Func),
            ("lower", lower as Func),
            ("upper", upper as Func),
            ("title", title as Func),
            ("truncate", truncate as Func),
        ]);
        tmpl.parse(text).map_err(|e| {
            Failure::new(format!(
                "invalid --format template {text:?}: {}",
                one_line(&e.to_string())
            ))
        })?;
        Ok(Compiled { tmpl })
    }

    /// The template's output for `v`.
    pub fn render(&self, v: &Json) -> Result<String, Failure> {
        self.tmpl
            .render(&Context::from(to_value(v)))
            .map_err(|e| Failure::new(format!("--format: {}", one_line(&e.to_string()))))
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Renders `rows` with the template `text`: one output per row, or with `table` a header
/// (the template run on `headers`, field name → column title) and columns split at tabs and
/// aligned as the command's own tables are.
pub fn render_rows(
    text: &str,
    table: bool,
    headers: &Json,
    rows: &[Json],
) -> Result<String, Failure> {
    let t = Compiled::new(text)?;
    let mut lines = Vec::new();
    if table {
        lines.push(t.render(headers)?);
    }
    for r in rows {
        lines.push(t.render(r)?);
    }
    if !table {
        return Ok(lines.iter().map(|l| format!("{l}\n")).collect());
    }
    let cells: Vec<Vec<String>> = lines
        .iter()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect();
    Ok(crate::table::render_rows(&cells))
}

/// The header object for a table: each of `keys` with its column title (Docker's, where
/// `titles` names one, else the key in capitals).
pub fn headers(keys: &[&str], titles: &[(&str, &str)]) -> Json {
    let t: HashMap<&str, &str> = titles.iter().copied().collect();
    Json::Object(
        keys.iter()
            .map(|k| {
                let title = t
                    .get(k)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| k.to_uppercase());
                (k.to_string(), Json::from(title))
            })
            .collect(),
    )
}

fn to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::Nil,
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        Json::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
    }
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => n
            .as_i64()
            .map(Json::from)
            .or_else(|| n.as_u64().map(Json::from))
            .or_else(|| n.as_f64().map(Json::from))
            .unwrap_or(Json::Null),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            Json::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), to_json(&o[k])))
                    .collect(),
            )
        }
    }
}

fn arg<'a>(name: &str, args: &'a [Value], n: usize) -> Result<&'a Value, FuncError> {
    if args.len() != n {
        return Err(FuncError::ExactlyXArgs(name.into(), n));
    }
    Ok(&args[0])
}

fn string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let v = arg("json", args, 1)?;
    Ok(Value::String(to_json(v).to_string()))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    if args.len() != 2 {
        return Err(FuncError::ExactlyXArgs("join".into(), 2));
    }
    let Value::Array(items) = &args[0] else {
        return Err(FuncError::UnableToConvertFromValue);
    };
    let sep = string(&args[1]);
    Ok(Value::String(
        items.iter().map(string).collect::<Vec<_>>().join(&sep),
    ))
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    if args.len() != 2 {
        return Err(FuncError::ExactlyXArgs("split".into(), 2));
    }
    let (s, sep) = (string(&args[0]), string(&args[1]));
    Ok(Value::Array(
        s.split(sep.as_str()).map(Value::from).collect(),
    ))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string(arg("lower", args, 1)?).to_lowercase()))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string(arg("upper", args, 1)?).to_uppercase()))
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string(arg("title", args, 1)?);
    let mut out = String::new();
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    Ok(Value::String(out))
}

fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    if args.len() != 2 {
        return Err(FuncError::ExactlyXArgs("truncate".into(), 2));
    }
    let s = string(&args[0]);
    let Value::Number(n) = &args[1] else {
        return Err(FuncError::UnableToConvertFromValue);
    };
    let n = n.as_u64().unwrap_or(0) as usize;
    Ok(Value::String(s.chars().take(n).collect()))
}

/// Prints `rows` as `--format` asks when it asks for JSON or a template; `false` when it asks
/// for the command's own table (which the caller prints).
pub fn print_rows(
    format: &str,
    keys: &[&str],
    titles: &[(&str, &str)],
    rows: &[Json],
) -> Result<bool, Failure> {
    match Format::parse(format) {
        Format::Table => Ok(false),
        Format::Json => {
            for r in rows {
                println!("{r}");
            }
            Ok(true)
        }
        Format::Template { text, table } => {
            print!(
                "{}",
                render_rows(&text, table, &headers(keys, titles), rows)?
            );
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_are_read_as_docker_reads_them() {
        assert_eq!(Format::parse("table"), Format::Table);
        assert_eq!(Format::parse("json"), Format::Json);
        assert_eq!(Format::parse("{{json .}}"), Format::Json);
        assert_eq!(
            Format::parse("table {{.ID}}\\t{{.Names}}"),
            Format::Template {
                text: "{{.ID}}\t{{.Names}}".into(),
                table: true
            }
        );
        assert_eq!(
            Format::parse("{{.ID}}"),
            Format::Template {
                text: "{{.ID}}".into(),
                table: false
            }
        );
    }

    #[test]
    fn templates_render_fields_functions_and_tables() {
        let doc = json!({"State": {"Pid": 42, "Running": true}, "Name": "/web",
                         "Config": {"Env": ["A=1", "B=2"], "Labels": {"x": "y"}}});
        let r = |t: &str| Compiled::new(t).unwrap().render(&doc).unwrap();
        assert_eq!(r("{{.State.Pid}} {{.State.Running}}"), "42 true");
        assert_eq!(r("{{join .Config.Env \",\"}}"), "A=1,B=2");
        assert_eq!(r("{{index .Config.Labels \"x\"}}"), "y");
        assert_eq!(r("{{json .State}}"), r#"{"Pid":42,"Running":true}"#);
        assert_eq!(r("{{upper .Name}} {{truncate .Name 3}}"), "/WEB /we");
        assert_eq!(r("{{range .Config.Env}}[{{.}}]{{end}}"), "[A=1][B=2]");
        let rows = [
            json!({"ID": "abc", "Names": "web"}),
            json!({"ID": "defgh", "Names": "db"}),
        ];
        let h = headers(&["ID", "Names"], &[("ID", "CONTAINER ID")]);
        let out = render_rows("{{.ID}}\t{{.Names}}", true, &h, &rows).unwrap();
        assert_eq!(
            out,
            "CONTAINER ID   NAMES\nabc            web\ndefgh          db\n"
        );
        let plain = render_rows("{{.Names}}", false, &h, &rows).unwrap();
        assert_eq!(plain, "web\ndb\n");
        let e = Compiled::new("{{.ID")
            .err()
            .map(|f| f.message)
            .unwrap_or_default();
        assert!(
            e.starts_with("invalid --format template") && !e.contains('\n'),
            "{e}"
        );
    }
}
