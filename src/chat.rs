//! Chat prompts in the model's own format: the Jinja template a model file carries
//! (`tokenizer.chat_template` in GGUF, `chat_template` in tokenizer_config.json), rendered with
//! minijinja the way Hugging Face's `apply_chat_template` renders it (trim_blocks and
//! lstrip_blocks on, Python's string and dict methods, `raise_exception`, `strftime_now`), or
//! ChatML when the model has no template.
use minijinja::{context, Environment, ErrorKind, Value};

use crate::error::{Error, Result};
use crate::model::tokenizer::TokenizerInfo;
use crate::openai::Message;

/// ChatML, for models without a template of their own (SmolLM2's format).
pub const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// What a template gets besides the messages.
#[derive(Debug, Clone, Default)]
pub struct TemplateVars {
    pub bos: String,
    pub eos: String,
    /// The time `strftime_now` formats (Unix seconds, UTC); None: now.
    pub now_unix: Option<u64>,
}

/// (year, month 1-12, day 1-31) of a count of days since 1970-01-01 (the proleptic
/// Gregorian calendar's civil-from-days conversion, by 400-year eras).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// C's strftime for the conversions chat templates use (%Y %y %m %d %e %B %b %A %a %H %M %S
/// %j %%), in UTC; any other conversion is kept as written.
pub fn strftime(fmt: &str, unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil_date(days);
    let wd = (days + 4).rem_euclid(7) as usize;
    let jan1 = {
        // Day of the year: days since this year's 1 January.
        let mut lo = days - 366;
        while civil_date(lo).0 < y {
            lo += 1;
        }
        days - lo + 1
    };
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('Y') => out += &y.to_string(),
            Some('y') => out += &format!("{:02}", y.rem_euclid(100)),
            Some('m') => out += &format!("{m:02}"),
            Some('d') => out += &format!("{d:02}"),
            Some('e') => out += &format!("{d:2}"),
            Some('B') => out += MONTHS[m as usize - 1],
            Some('b') => out += &MONTHS[m as usize - 1][..3],
            Some('A') => out += WEEKDAYS[wd],
            Some('a') => out += &WEEKDAYS[wd][..3],
            Some('H') => out += &format!("{:02}", secs / 3600),
            Some('M') => out += &format!("{:02}", secs / 60 % 60),
            Some('S') => out += &format!("{:02}", secs % 60),
            Some('j') => out += &format!("{jan1:03}"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn template_err(e: minijinja::Error) -> Error {
    // The template's own raise_exception message, or the error with its line.
    let mut msg = e.to_string();
    if let Some(d) = e.detail() {
        if !msg.contains(d) {
            msg = format!("{msg}: {d}");
        }
    }
    Error::Template(msg)
}

/// Python's `json.dumps` layout, as Hugging Face's `tojson` filter calls it
/// (ensure_ascii off): `item` and `key` separators, and `indent` spaces per level when Some.
struct PyJson<'a> {
    item: &'a [u8],
    key: &'a [u8],
    indent: Option<usize>,
    /// Per open container: whether it has had a value (an empty one prints as `[]`, `{}`).
    open: Vec<bool>,
}

impl PyJson<'_> {
    /// Before an array's value or an object's key: the separator after the one before, and
    /// this container marked as holding something.
    fn item<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(self.item)?;
        }
        if let Some(o) = self.open.last_mut() {
            *o = true;
        }
        self.newline(w)
    }

    /// The end of an array or object: on a line of its own when it held something.
    fn close<W: ?Sized + std::io::Write>(&mut self, w: &mut W, end: &[u8]) -> std::io::Result<()> {
        if self.open.pop() == Some(true) {
            self.newline(w)?;
        }
        w.write_all(end)
    }

    fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        if let Some(n) = self.indent {
            w.write_all(b"\n")?;
            w.write_all(" ".repeat(n * self.open.len()).as_bytes())?;
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for PyJson<'_> {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open.push(false);
        w.write_all(b"[")
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open.push(false);
        w.write_all(b"{")
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(self.key)
    }
}

/// Python's json.dumps of `v` (Hugging Face's `tojson` filter: keys in their order, no HTML
/// escaping, `indent`, `separators` and `sort_keys` as Python takes them). Empty containers
/// print as `[]` and `{}` even when indented, as in Python.
fn tojson(
    v: &Value,
    args: minijinja::value::Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = args.get("indent")?;
    let seps: Option<Vec<String>> = args.get("separators")?;
    let sort: Option<bool> = args.get("sort_keys")?;
    let _: Option<bool> = args.get("ensure_ascii")?;
    args.assert_all_used()?;
    let bad = |e: &dyn std::fmt::Display| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}"))
    };
    let mut json = serde_json::to_value(v).map_err(|e| bad(&e))?;
    if sort == Some(true) {
        json.sort_all_objects();
    }
    let (item, key) = match &seps {
        Some(s) if s.len() == 2 => (s[0].as_str(), s[1].as_str()),
        Some(_) => return Err(bad(&"separators must be two strings")),
        None if indent.is_some() => (",", ": "),
        None => (", ", ": "),
    };
    let f = PyJson {
        item: item.as_bytes(),
        key: key.as_bytes(),
        indent,
        open: Vec::new(),
    };
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, f);
    serde::Serialize::serialize(&json, &mut ser).map_err(|e| bad(&e))?;
    let text = String::from_utf8(out).map_err(|e| bad(&e))?;
    Ok(Value::from_safe_string(text))
}

/// A message as Hugging Face's templates get it: role and content, then only the fields it
/// has (templates test `'tool_calls' in message`).
fn message_value(m: &Message) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("role".into(), m.role.clone().into());
    o.insert("content".into(), m.content.clone().into());
    if !m.tool_calls.is_empty() {
        o.insert("tool_calls".into(), m.tool_calls.clone().into());
    }
    if let Some(id) = &m.tool_call_id {
        o.insert("tool_call_id".into(), id.clone().into());
    }
    if let Some(n) = &m.name {
        o.insert("name".into(), n.clone().into());
    }
    Value::from_serialize(&o)
}

/// Whether a template shows the model tools (Hugging Face passes `tools`; a template that
/// never names them ignores them).
pub fn has_tools(template: Option<&str>) -> bool {
    template.is_some_and(|t| t.contains("tools"))
}

/// Render `msgs` with `template` (ChatML when None), ending with the prompt for the
/// assistant's turn; `tools`, the declared tools as the request gave them, are passed as
/// Hugging Face passes them (None without tools).
pub fn render(
    template: Option<&str>,
    msgs: &[Message],
    tools: Option<&[serde_json::Value]>,
    t: &TemplateVars,
) -> Result<String> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    let now = t.now_unix.unwrap_or_else(|| {
        web_time::SystemTime::now()
            .duration_since(web_time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    env.add_function("strftime_now", move |fmt: String| strftime(&fmt, now));
    env.add_filter("tojson", tojson);
    env.add_template("chat", template.unwrap_or(CHATML))
        .map_err(template_err)?;
    let messages: Vec<Value> = msgs.iter().map(message_value).collect();
    let tools = tools.map(Value::from_serialize);
    env.get_template("chat")
        .and_then(|tpl| {
            tpl.render(context! {
                messages => messages,
                tools => tools,
                add_generation_prompt => true,
                bos_token => &t.bos,
                eos_token => &t.eos,
            })
        })
        .map_err(template_err)
}

impl TokenizerInfo {
    /// The text of BOS and of the first end-of-sequence token, as templates name them.
    pub fn template_vars(&self) -> TemplateVars {
        let text = |id: Option<u32>| {
            id.and_then(|i| self.tokenizer.as_ref()?.id_to_token(i))
                .unwrap_or_default()
        };
        TemplateVars {
            bos: text(self.bos),
            eos: text(self.eos.first().copied()),
            now_unix: None,
        }
    }

    /// A conversation of (role, content) pairs as the prompt text to encode with
    /// `encode(.., true)` (`chat_prompt_with`, without tools).
    pub fn chat_prompt(&self, msgs: &[(String, String)]) -> Result<String> {
        let msgs: Vec<Message> = msgs.iter().map(|(r, c)| Message::text(r, c)).collect();
        self.chat_prompt_with(&msgs, None)
    }

    /// A conversation, with the declared tools if any, as the prompt text to encode with
    /// `encode(.., true)`: the model's chat template (ChatML without one). A template that
    /// writes BOS itself loses it here when the encoder adds BOS anyway, so that the prompt
    /// never starts with two.
    pub fn chat_prompt_with(
        &self,
        msgs: &[Message],
        tools: Option<&[serde_json::Value]>,
    ) -> Result<String> {
        let t = self.template_vars();
        let text = render(self.chat_template.as_deref(), msgs, tools, &t)?;
        if self.add_bos && self.bos.is_some() && !t.bos.is_empty() {
            if let Some(rest) = text.strip_prefix(&t.bos) {
                return Ok(rest.to_string());
            }
        }
        Ok(text)
    }
}
