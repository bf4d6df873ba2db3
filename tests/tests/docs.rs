//! The defaults the docs quote are the code's: every row of a settings table with a `default`
//! column (`| setting | default | meaning |`) and every setting quoted in prose with its default
//! in brackets (`` `push_batch_delay_ms` (10) ``, `` `store.call_timeout_ms` (8 s) ``) is held
//! against the settings a process gets with no file and no environment
//! (`session_core::config::Settings`, and the streamer's own
//! `session_streamer::StreamerSettings` as `streamer.*`). The settings are read through their
//! `Debug` form, so the check needs nothing from the config modules but their public types.

use std::fmt::Write as _;

use figment::Figment;
use session_core::config::Settings;
use session_streamer::StreamerSettings;

/// The documents whose settings tables and quoted defaults are checked.
const DOCUMENTS: &[&str] = &["README.md", "docs/architecture.md", "docs/deploy.md"];

/// A value as `Debug` prints it: enough of Rust's `Debug` syntax to find a field by its path.
#[derive(Debug, PartialEq)]
enum Value {
    /// A number, `None`, `true`, a unit variant, a `Duration` (`10ms`): the text as printed.
    Atom(String),
    /// A quoted string, unescaped.
    Str(String),
    /// `Name { field: value, .. }`.
    Struct(Vec<(String, Value)>),
    /// `Name(value, ..)` (`Some(..)`), a list, or a map or set (its entries flattened).
    Items(String, Vec<Value>),
}

impl Value {
    /// The value at a dotted path (`streamer.max_connections`).
    fn at(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self, |value, name| match value {
            Value::Struct(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        })
    }

    /// The dotted paths of every field named `leaf`, at any depth.
    fn paths_of(&self, leaf: &str, prefix: &str, found: &mut Vec<String>) {
        if let Value::Struct(fields) = self {
            for (name, value) in fields {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                if name == leaf {
                    found.push(path.clone());
                }
                value.paths_of(leaf, &path, found);
            }
        }
    }

    /// `Some(x)` is `x`: the docs say a default, or `unset`.
    fn unwrapped(&self) -> &Value {
        match self {
            Value::Items(name, items) if name == "Some" && items.len() == 1 => &items[0],
            other => other,
        }
    }

    /// The value in one line, for messages.
    fn render(&self) -> String {
        match self {
            Value::Atom(text) => text.clone(),
            Value::Str(text) => format!("{text:?}"),
            Value::Struct(fields) => {
                let mut out = String::from("{");
                for (i, (name, value)) in fields.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    let _ = write!(out, "{sep}{name}: {}", value.render());
                }
                out + " }"
            }
            Value::Items(name, items) => {
                let items: Vec<String> = items.iter().map(Value::render).collect();
                format!("{name}({})", items.join(", "))
            }
        }
    }
}

/// Parses `{:?}` output. Lenient where the docs do not look (addresses, secrets' wrappers):
/// whatever follows a value up to the next separator is kept in its text.
struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_spaces();
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn value(&mut self) -> Value {
        self.skip_spaces();
        let value = match self.peek() {
            Some(b'"') => Value::Str(self.string()),
            Some(b'[') => {
                self.at += 1;
                Value::Items(String::new(), self.items(b']'))
            }
            Some(b'{') => {
                self.at += 1;
                Value::Items(String::new(), self.items(b'}'))
            }
            _ => {
                let name = self.word();
                self.skip_spaces();
                match self.peek() {
                    Some(b'{') => {
                        self.at += 1;
                        Value::Struct(self.fields())
                    }
                    Some(b'(') => {
                        self.at += 1;
                        Value::Items(name, self.items(b')'))
                    }
                    _ => Value::Atom(name),
                }
            }
        };
        // Anything glued to the value (`[::1]:8090`) is not looked at.
        while let Some(byte) = self.peek() {
            if b",)]}".contains(&byte)
                || (byte == b':' && self.text.get(self.at + 1) == Some(&b' '))
            {
                break;
            }
            self.at += 1;
        }
        value
    }

    /// A run of text up to a separator; a `:` counts only before a space (`127.0.0.1:80`).
    fn word(&mut self) -> String {
        let start = self.at;
        while let Some(byte) = self.peek() {
            let field_colon = byte == b':' && self.text.get(self.at + 1) == Some(&b' ');
            if b" ,(){}[]\"".contains(&byte) || field_colon {
                break;
            }
            self.at += 1;
        }
        String::from_utf8_lossy(&self.text[start..self.at]).into_owned()
    }

    fn string(&mut self) -> String {
        self.at += 1;
        let mut out = Vec::new();
        while let Some(byte) = self.peek() {
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.at += 1;
                    }
                }
                _ => out.push(byte),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `name: value, ..}` (the opening brace eaten).
    fn fields(&mut self) -> Vec<(String, Value)> {
        let mut fields = Vec::new();
        loop {
            if self.eat(b'}') || self.peek().is_none() {
                return fields;
            }
            self.skip_spaces();
            let name = self.word();
            // `..` closes a struct that hides fields (`finish_non_exhaustive`).
            if name == ".." {
                self.eat(b'}');
                return fields;
            }
            self.eat(b':');
            let value = self.value();
            fields.push((name, value));
            self.eat(b',');
        }
    }

    /// `value, ..` up to `close` (the opening bracket eaten); map entries' keys and values alike.
    fn items(&mut self, close: u8) -> Vec<Value> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) || self.peek().is_none() {
                return items;
            }
            items.push(self.value());
            if !self.eat(b',') {
                self.eat(b':');
            }
        }
    }
}

/// The settings of a process given no file and no environment, as a tree: core's, with the
/// streamer's own in place of the `streamer` key core only accepts.
fn default_settings() -> Value {
    let settings = Settings::from_figment(&Figment::new()).expect("the defaults load and validate");
    let streamer =
        StreamerSettings::from_figment(&Figment::new()).expect("the defaults load and validate");
    let Value::Struct(mut fields) = parse_debug(&format!("{settings:?}")) else {
        unreachable!("parse_debug returns a struct")
    };
    fields.retain(|(name, _)| name != "streamer");
    fields.push(("streamer".to_owned(), parse_debug(&format!("{streamer:?}"))));
    Value::Struct(fields)
}

/// A settings struct's `Debug` form, as a tree.
fn parse_debug(debug: &str) -> Value {
    let mut parser = Parser {
        text: debug.as_bytes(),
        at: 0,
    };
    let value = parser.value();
    assert!(
        matches!(value, Value::Struct(_)),
        "cannot read the settings' Debug form: {debug}"
    );
    value
}

/// A documented default, and where it was read.
#[derive(Debug)]
struct Quoted {
    /// `docs/architecture.md:453`.
    place: String,
    /// The setting as the docs name it: a dotted path, or a field name alone in prose.
    setting: String,
    /// The default as written (`20000`, `unset`, `` `x-origin-verify` ``, `20/s, burst 40`,
    /// `8 s`).
    default: String,
}

/// The text of the first pair of backticks in `text`, and what follows it.
fn backticked(text: &str) -> Option<(&str, &str)> {
    let start = text.find('`')? + 1;
    let len = text[start..].find('`')?;
    Some((&text[start..start + len], &text[start + len + 1..]))
}

/// Every settings-table row with a default, and every `` `setting` (default) `` in prose.
fn quoted_defaults(document: &str, text: &str) -> Vec<Quoted> {
    let mut quoted = Vec::new();
    let mut default_column = None;
    for (number, line) in text.lines().enumerate() {
        let place = format!("{document}:{}", number + 1);
        let row = line.trim();
        if !row.starts_with('|') {
            default_column = None;
        } else if row.starts_with("| setting") {
            default_column = row.split('|').position(|cell| cell.trim() == "default");
        } else if let Some(column) = default_column {
            let cells: Vec<&str> = row.split('|').collect();
            if let (Some((setting, _)), Some(default)) = (backticked(cells[1]), cells.get(column)) {
                quoted.push(Quoted {
                    place,
                    setting: setting.to_owned(),
                    default: default.trim().to_owned(),
                });
            }
            continue;
        }
        // Prose: `name` (number [unit]).
        let mut rest = line;
        while let Some((name, after)) = backticked(rest) {
            rest = after;
            let Some(bracket) = after.strip_prefix(" (") else {
                continue;
            };
            // The bracket's first clause (`(2 h, then ...)`), when it is an amount alone: not
            // an expression (`(60 s + 2 h by default)`).
            let Some(inside) = bracket.split([')', ',', ';']).next().map(str::trim) else {
                continue;
            };
            let is_setting_like = name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b"_.".contains(&b));
            if is_setting_like && amount(inside).is_some() {
                quoted.push(Quoted {
                    place: place.clone(),
                    setting: name.to_owned(),
                    default: inside.to_owned(),
                });
            }
        }
    }
    quoted
}

/// A number with an optional unit, in milliseconds when it has one (`8 s`, `10ms`).
fn amount(text: &str) -> Option<(f64, Option<f64>)> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_' || c == ','))
        .unwrap_or(text.len());
    let number: f64 = text[..split].replace(['_', ','], "").parse().ok()?;
    let scale = match text[split..].trim() {
        "" => None,
        "ns" => Some(1e-6),
        "µs" => Some(1e-3),
        "ms" => Some(1.0),
        "s" => Some(1e3),
        "min" => Some(60e3),
        "h" => Some(3600e3),
        _ => return None,
    };
    Some((number, scale))
}

/// Whether a documented default is the real value of `setting`; `Err` when the docs' text is
/// not one of the forms this check reads.
fn agrees(setting: &str, documented: &str, real: &Value) -> Result<bool, String> {
    let real = real.unwrapped();
    if documented == "unset" {
        return Ok(*real == Value::Atom("None".into()));
    }
    if let Some(text) = documented
        .strip_prefix('`')
        .and_then(|d| d.strip_suffix('`'))
    {
        return Ok(matches!(real, Value::Str(s) if s == text)
            || matches!(real, Value::Atom(a) if a == text));
    }
    if let Some((per_second, burst)) = documented.split_once("/s, burst ") {
        let field = |name: &str| real.at(name).map(Value::render);
        return Ok(field("per_second").as_deref() == Some(per_second)
            && field("burst").as_deref() == Some(burst));
    }
    if documented == "true" || documented == "false" {
        return Ok(*real == Value::Atom(documented.into()));
    }
    let Some((number, unit)) = amount(documented) else {
        return Err(format!("cannot read the documented default {documented:?}"));
    };
    let Value::Atom(real) = real else {
        return Ok(false);
    };
    let Some((real_number, real_unit)) = amount(real) else {
        return Ok(false);
    };
    // In milliseconds when either side has a unit (the setting's is its suffix), else as
    // numbers; a unit on one side only of a setting without one cannot agree.
    let setting_unit = if setting.ends_with("_ms") {
        Some(1.0)
    } else if setting.ends_with("_secs") {
        Some(1e3)
    } else {
        None
    };
    if setting_unit.is_none() && unit.is_some() != real_unit.is_some() {
        return Ok(false);
    }
    let documented = number * unit.or(setting_unit).unwrap_or(1.0);
    let real = real_number * real_unit.or(setting_unit).unwrap_or(1.0);
    Ok((documented - real).abs() < 1e-6)
}

#[test]
fn every_default_the_docs_quote_is_the_default_in_the_code() {
    let settings = default_settings();
    let root = session_tests::moto::repo_root();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for document in DOCUMENTS {
        let text = std::fs::read_to_string(root.join(document))
            .unwrap_or_else(|e| panic!("cannot read {document}: {e}"));
        for quoted in quoted_defaults(document, &text) {
            // A dotted name is a path; a bare one (prose) must name exactly one setting, and
            // names none when it is no setting at all (`snapshot` (128 KiB)).
            let path = if quoted.setting.contains('.') {
                quoted.setting.clone()
            } else {
                let mut found = Vec::new();
                settings.paths_of(&quoted.setting, "", &mut found);
                match found.as_slice() {
                    [] => continue,
                    [one] => one.clone(),
                    many => {
                        wrong.push(format!(
                            "{}: `{}` is ambiguous ({}): name its section",
                            quoted.place,
                            quoted.setting,
                            many.join(", ")
                        ));
                        continue;
                    }
                }
            };
            let Some(real) = settings.at(&path) else {
                wrong.push(format!(
                    "{}: `{path}` is documented but is not a setting",
                    quoted.place
                ));
                continue;
            };
            checked += 1;
            match agrees(&path, &quoted.default, real) {
                Ok(true) => {}
                Ok(false) => wrong.push(format!(
                    "{}: `{path}`: documented default {}, the code's {}",
                    quoted.place,
                    quoted.default,
                    real.unwrapped().render()
                )),
                Err(why) => wrong.push(format!("{}: `{path}`: {why}", quoted.place)),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "docs and code disagree:\n{}",
        wrong.join("\n")
    );
    // The tables of docs/architecture.md alone quote more than 30: a parser that finds none
    // has stopped reading them.
    assert!(checked >= 30, "only {checked} documented defaults found");
}

#[test]
fn the_check_reports_a_wrong_default_with_the_setting_and_both_values() {
    let settings = default_settings();
    let table = "| setting (`SESSION_STREAMER__…`) | default | meaning |\n\
                 | --- | --- | --- |\n\
                 | `streamer.max_connections` (`MAX_CONNECTIONS`) | 123 | connections per pod |\n";
    let quoted = quoted_defaults("doc.md", table);
    assert_eq!(quoted.len(), 1, "{quoted:?}");
    let real = settings.at(&quoted[0].setting).expect("a setting");
    assert_eq!(
        agrees(&quoted[0].setting, &quoted[0].default, real),
        Ok(false)
    );
    assert_eq!(real.render(), "20000");

    let prose =
        "a pusher waits up to `push_batch_delay_ms` (20) for more, `store.call_timeout_ms` (8 s)";
    let quoted = quoted_defaults("doc.md", prose);
    let found: Vec<(&str, &str)> = quoted
        .iter()
        .map(|q| (q.setting.as_str(), q.default.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("push_batch_delay_ms", "20"),
            ("store.call_timeout_ms", "8 s")
        ]
    );
    let batch_delay = settings
        .at("streamer.push_batch_delay_ms")
        .expect("a setting");
    assert_eq!(
        agrees("streamer.push_batch_delay_ms", "20", batch_delay),
        Ok(false)
    );
    assert_eq!(
        agrees("streamer.push_batch_delay_ms", "10", batch_delay),
        Ok(true)
    );
    let call_timeout = settings.at("store.call_timeout_ms").expect("a setting");
    assert_eq!(
        agrees("store.call_timeout_ms", "8 s", call_timeout),
        Ok(true)
    );
    assert_eq!(
        agrees("store.call_timeout_ms", "8000", call_timeout),
        Ok(true)
    );
    assert_eq!(
        agrees("store.call_timeout_ms", "8 min", call_timeout),
        Ok(false)
    );
    assert!(agrees("store.call_timeout_ms", "eight", call_timeout).is_err());
}
