//! containerd's filter language, as List uses it (`cd@v1.6.20:filters`).
//!
//! ```text
//! selectors := selector ("," selector)*        every selector must match (AND)
//! selector  := fieldpath [operator value]      no operator: the field is present
//! fieldpath := field ("." field)*
//! field     := quoted | [A-Za-z0-9_]+
//! operator  := "==" | "!=" | "~="
//! value     := quoted | [^\s,]+
//! quoted    := a Go-style double-quoted string; after `~=` also /.../ or |...|
//! ```
//!
//! Several filter strings in one request are ORed; an empty string or no strings match all.
//!
//! ```
//! use strata_snapshotter::filter::{Filters, Fields};
//! struct Obj;
//! impl Fields for Obj {
//!     fn field(&self, path: &[String]) -> Option<String> {
//!         (path == ["name"]).then(|| "p".to_string())
//!     }
//! }
//! let f = Filters::parse(&["name==p".to_string()]).unwrap();
//! assert!(f.matches(&Obj));
//! assert!(Filters::parse(&["name==".to_string()]).is_err());
//! ```

use regex::Regex;

/// What a filter is matched against: a lookup of a field path.
pub trait Fields {
    /// The value of the field at `path`, or `None` if the object has no such field.
    fn field(&self, path: &[String]) -> Option<String>;
}

/// A syntax error in a filter, with the position it was found at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter {input:?} at byte {pos}: {message}")]
pub struct ParseError {
    /// The filter string.
    pub input: String,
    /// Byte offset of the problem.
    pub pos: usize,
    /// What was wrong.
    pub message: String,
}

#[derive(Debug, Clone)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

#[derive(Debug, Clone)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

impl Selector {
    fn matches(&self, obj: &dyn Fields) -> bool {
        let value = obj.field(&self.path);
        match &self.op {
            Op::Present => value.is_some(),
            Op::Equal(want) => value.as_deref() == Some(want.as_str()),
            Op::NotEqual(want) => value.as_deref() != Some(want.as_str()),
            Op::Matches(re) => re.is_match(value.as_deref().unwrap_or("")),
        }
    }
}

/// A parsed set of filters: the OR of ANDed selectors.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    any: Vec<Vec<Selector>>,
}

impl Filters {
    /// Parses the filters of a List request. An empty list, or an empty string among them,
    /// matches everything.
    pub fn parse(filters: &[String]) -> Result<Self, ParseError> {
        let mut any = Vec::with_capacity(filters.len());
        for f in filters {
            any.push(Parser::new(f).selectors()?);
        }
        Ok(Filters { any })
    }

    /// True when the object matches any of the filters.
    pub fn matches(&self, obj: &dyn Fields) -> bool {
        self.any.is_empty()
            || self
                .any
                .iter()
                .any(|all| all.iter().all(|s| s.matches(obj)))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Eof,
    Field(String),
    Value(String),
    /// The raw quoted text, quotes included.
    Quoted(String),
    Separator(char),
    Operator(String),
    Illegal(String),
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    /// After an operator, the next bare word is a value, not a field.
    value_mode: bool,
}

fn is_field_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn is_quote_char(c: char) -> bool {
    matches!(c, '"' | '/' | '|')
}

fn is_value_char(c: char) -> bool {
    c != ',' && !c.is_whitespace() && !c.is_control()
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            input,
            pos: 0,
            value_mode: false,
        }
    }

    fn err(&self, pos: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            input: self.input.to_string(),
            pos,
            message: message.into(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn peek_char(&self) -> Option<char> {
        self.rest().trim_start().chars().next()
    }

    /// Scans the next token; returns its start position.
    fn scan(&mut self) -> (usize, Token) {
        let trimmed = self.rest().trim_start();
        self.pos = self.input.len() - trimmed.len();
        let start = self.pos;
        let Some(c) = trimmed.chars().next() else {
            return (start, Token::Eof);
        };
        if is_quote_char(c) {
            return (start, self.scan_quoted(c));
        }
        if c == ',' || c == '.' {
            self.pos += 1;
            self.value_mode = false;
            return (start, Token::Separator(c));
        }
        if matches!(c, '=' | '!' | '~') {
            let len = trimmed
                .chars()
                .take_while(|c| matches!(c, '=' | '!' | '~'))
                .count();
            self.pos += len;
            self.value_mode = true;
            return (
                start,
                Token::Operator(self.input[start..self.pos].to_string()),
            );
        }
        if self.value_mode {
            let len: usize = trimmed
                .chars()
                .take_while(|c| is_value_char(*c))
                .map(char::len_utf8)
                .sum();
            self.pos += len;
            self.value_mode = false;
            return (start, Token::Value(self.input[start..self.pos].to_string()));
        }
        if is_field_char(c) {
            let len = trimmed.chars().take_while(|c| is_field_char(*c)).count();
            self.pos += len;
            return (start, Token::Field(self.input[start..self.pos].to_string()));
        }
        self.pos += c.len_utf8();
        (start, Token::Illegal(c.to_string()))
    }

    fn scan_quoted(&mut self, quote: char) -> Token {
        let start = self.pos;
        let mut chars = self.input[start + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '\\' {
                chars.next();
            } else if c == '\n' {
                break;
            } else if c == quote {
                self.pos = start + 1 + i + 1;
                return Token::Quoted(self.input[start..self.pos].to_string());
            }
        }
        self.pos = self.input.len();
        Token::Illegal("quoted literal not terminated".into())
    }

    fn selectors(&mut self) -> Result<Vec<Selector>, ParseError> {
        if self.input.is_empty() {
            return Ok(Vec::new());
        }
        let mut all = vec![self.selector()?];
        loop {
            match self.peek_char() {
                None => return Ok(all),
                Some(',') => {
                    self.scan();
                    all.push(self.selector()?);
                }
                Some(c) => {
                    let pos = self.input.len() - self.rest().trim_start().len();
                    return Err(self.err(pos, format!("unexpected input: {c:?}")));
                }
            }
        }
    }

    fn selector(&mut self) -> Result<Selector, ParseError> {
        let path = self.fieldpath()?;
        if matches!(self.peek_char(), None | Some(',')) {
            return Ok(Selector {
                path,
                op: Op::Present,
            });
        }
        let (pos, tok) = self.scan();
        let op = match tok {
            Token::Operator(op) => op,
            Token::Illegal(m) => return Err(self.err(pos, m)),
            _ => return Err(self.err(pos, r#"expected an operator ("=="|"!="|"~=")"#)),
        };
        let alt_quotes = op == "~=";
        let (vpos, tok) = self.scan();
        let value = match tok {
            Token::Value(v) | Token::Field(v) => v,
            Token::Quoted(q) => self.unquote(vpos, &q, alt_quotes)?,
            Token::Illegal(m) => return Err(self.err(vpos, m)),
            Token::Eof => return Err(self.err(vpos, "expected a value after the operator")),
            _ => return Err(self.err(vpos, "expected value or quoted")),
        };
        let op = match op.as_str() {
            "==" => Op::Equal(value),
            "!=" => Op::NotEqual(value),
            "~=" => Op::Matches(
                Regex::new(&value)
                    .map_err(|e| self.err(vpos, format!("invalid regular expression: {e}")))?,
            ),
            other => return Err(self.err(pos, format!("unsupported operator {other:?}"))),
        };
        Ok(Selector { path, op })
    }

    fn fieldpath(&mut self) -> Result<Vec<String>, ParseError> {
        let mut path = vec![self.field()?];
        while self.peek_char() == Some('.') {
            self.scan();
            path.push(self.field()?);
        }
        Ok(path)
    }

    fn field(&mut self) -> Result<String, ParseError> {
        let (pos, tok) = self.scan();
        match tok {
            Token::Field(f) => Ok(f),
            Token::Quoted(q) => self.unquote(pos, &q, false),
            Token::Illegal(m) => Err(self.err(pos, m)),
            _ => Err(self.err(pos, "expected field or quoted")),
        }
    }

    fn unquote(&self, pos: usize, quoted: &str, alt_quotes: bool) -> Result<String, ParseError> {
        unquote(quoted, alt_quotes).map_err(|m| self.err(pos, m))
    }
}

/// Removes the quotes and resolves Go escape sequences.
fn unquote(quoted: &str, alt_quotes: bool) -> Result<String, String> {
    let mut chars = quoted.chars();
    let quote = chars.next().ok_or("empty quoted string")?;
    if quote != '"' && !alt_quotes {
        return Err(format!(
            "invalid quote {quote:?}: only \"...\" is allowed here"
        ));
    }
    let body = &quoted[1..quoted.len() - quote.len_utf8()];
    let mut out = String::with_capacity(body.len());
    let mut it = body.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = it.next().ok_or("unfinished escape")?;
        let simple = match e {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' => Some('\\'),
            c if c == quote => Some(c),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            continue;
        }
        let (radix, digits) = match e {
            '0'..='7' => (8, 3),
            'x' => (16, 2),
            'u' => (16, 4),
            'U' => (16, 8),
            other => return Err(format!("unknown escape \\{other}")),
        };
        let mut text = String::new();
        if radix == 8 {
            text.push(e);
        }
        while text.len() < digits {
            text.push(it.next().ok_or("short escape sequence")?);
        }
        let n =
            u32::from_str_radix(&text, radix).map_err(|_| format!("bad escape digits {text:?}"))?;
        out.push(char::from_u32(n).ok_or(format!("escape \\{e}{text} is not a character"))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Obj {
        name: &'static str,
        parent: &'static str,
        labels: HashMap<&'static str, &'static str>,
    }

    impl Fields for Obj {
        fn field(&self, path: &[String]) -> Option<String> {
            match path.first().map(String::as_str)? {
                "name" => Some(self.name.into()),
                "parent" => Some(self.parent.into()),
                "labels" if path.len() > 1 => self
                    .labels
                    .get(path[1..].join(".").as_str())
                    .map(|v| v.to_string()),
                _ => None,
            }
        }
    }

    fn obj() -> Obj {
        Obj {
            name: "a-wl",
            parent: "",
            labels: HashMap::from([("l", "2"), ("containerd.io/gc.root", "check-walk")]),
        }
    }

    fn m(filters: &[&str]) -> bool {
        let f: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
        Filters::parse(&f).unwrap().matches(&obj())
    }

    #[test]
    fn operators() {
        assert!(m(&[]));
        assert!(m(&[""]));
        assert!(m(&["name==a-wl"]));
        assert!(!m(&["name==p"]));
        assert!(m(&["name!=p"]));
        assert!(m(&["labels.l"]));
        assert!(!m(&["labels.x"]));
        assert!(m(&["labels.x!=1"]), "!= matches an absent field");
        assert!(m(&["labels.l==2"]));
        assert!(m(&["name~=^a-"]));
        assert!(m(&["name~=/^a-w/"]));
        assert!(m(&["name~=|w.$|"]));
        assert!(!m(&["name~=^p"]));
    }

    #[test]
    fn quoting_and_combination() {
        assert!(m(&[r#"labels."containerd.io/gc.root"==check-walk"#]));
        assert!(m(&[r#"labels."containerd.io/gc.root"=="check-walk""#]));
        assert!(m(&["name==a-wl,labels.l"]));
        assert!(!m(&["name==a-wl,labels.nope"]));
        assert!(m(&["name==p", "name==a-wl"]), "filters are ORed");
        assert!(!m(&[r#"parent!="""#]));
        assert!(m(&[r#"parent=="""#]));
        assert!(m(&[" name == a-wl , labels.l "]));
        assert!(m(&[r#"name=="a\x2dwl""#]));
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "name==",
            "name=",
            "name===x",
            "==x",
            ",",
            "name==p,",
            r#"labels."unterminated"#,
            "name==/x/",
            "name~=(",
            "name p",
            "labels.",
            r#"name=="\q""#,
        ] {
            let err = Filters::parse(&[bad.to_string()]);
            assert!(err.is_err(), "{bad:?} should not parse");
        }
    }
}
