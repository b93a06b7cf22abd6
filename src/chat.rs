//! Chat: the model's own `tokenizer.chat_template`, rendered with minijinja.

use minijinja::value::ValueKind;
use minijinja::{context, Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Bounds a hostile template's work (loops, huge outputs) and recursion.
const TEMPLATE_FUEL: u64 = 5_000_000;
const TEMPLATE_MAX_OUTPUT: usize = 4 << 20;
/// The most items a template may print as one value. A sequence repeated by a huge factor
/// (`messages * 10**14`) is lazy, and printing it would run for days inside one step, where fuel
/// does not reach (a fuzzer finding).
const TEMPLATE_MAX_PRINTED_ITEMS: usize = 10_000;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.to_string(), content: content.to_string() }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// Whether the template takes `enable_thinking` (Qwen3, SmolLM3: reasoning models).
    thinks: bool,
    /// `enable_thinking` as the template sees it; `None` leaves it undefined (its default).
    enable_thinking: Option<bool>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

fn template_err(e: minijinja::Error) -> Error {
    Error::Template(match e.kind() {
        ErrorKind::OutOfFuel => "the template runs too long (a loop without end?)".to_string(),
        _ => e.to_string(),
    })
}

impl ChatTemplate {
    /// Compiles `source` (Jinja, as in Hugging Face's `chat_template`). `bos`/`eos` are the
    /// texts templates see as `bos_token`/`eos_token`.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        // Python-style methods (`.strip()`, `.startswith()`) that HF templates use.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(100);
        env.set_formatter(|out, state, value| {
            // A lazy iterable (a repeated sequence, a range) may be empty yet take days to walk.
            if value.kind() == ValueKind::Iterable
                || matches!(value.kind(), ValueKind::Seq | ValueKind::Map) && value.len().is_none_or(|n| n > TEMPLATE_MAX_PRINTED_ITEMS)
            {
                let n = value.len().map_or("an unknown number of".to_string(), |n| n.to_string());
                let lazy = if value.kind() == ValueKind::Iterable { "lazy " } else { "" };
                return Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("the template prints a {lazy}sequence of {n} items")));
            }
            minijinja::escape_formatter(out, state, value)
        });
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        // Today's date, as transformers gives templates (Llama 3.x's and SmolLM3's write it).
        env.add_function("strftime_now", |format: String| crate::clock::strftime(&format, crate::clock::unix_s()));
        env.add_template_owned("chat", source.to_string()).map_err(template_err)?;
        let thinks = source.contains("enable_thinking");
        Ok(ChatTemplate { env, bos: bos.to_string(), eos: eos.to_string(), thinks, enable_thinking: None })
    }

    /// Whether the template has a thinking switch (`enable_thinking`).
    pub fn thinks(&self) -> bool {
        self.thinks
    }

    /// Sets the thinking switch the template sees: `Some(false)` asks a reasoning model to
    /// answer without thinking (Qwen3's template then writes an empty `<think></think>`);
    /// `None` leaves `enable_thinking` undefined, the template's own default.
    pub fn set_thinking(&mut self, on: Option<bool>) {
        self.enable_thinking = on;
    }

    /// Renders a short conversation, so that a template that loops, recurses or raises on
    /// ordinary input fails when the model loads rather than at the user's first message.
    pub fn check(&self) -> Result<()> {
        let sample = [Message::new("user", "Hi"), Message::new("assistant", "Hello!"), Message::new("user", "Why?")];
        match self.render(&sample, true) {
            Err(Error::Template(m)) => Err(Error::Template(format!("it fails on a simple conversation: {m}"))),
            other => other.map(drop),
        }
    }

    /// The exact prompt text for `messages`; with `add_generation_prompt`, it ends where the
    /// assistant's answer begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let t = self.env.get_template("chat").map_err(template_err)?;
        // The output is capped as it is written: a loop of huge strings stops at the cap
        // instead of filling memory first.
        let mut out = Capped(Vec::new());
        let rendered = t.render_captured_to(
            context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos,
                eos_token => &self.eos,
                enable_thinking => self.enable_thinking.map_or(minijinja::Value::UNDEFINED, minijinja::Value::from),
            },
            &mut out,
        );
        if out.0.len() > TEMPLATE_MAX_OUTPUT {
            return Err(Error::Template(format!("the template produced more than {} bytes of prompt", TEMPLATE_MAX_OUTPUT)));
        }
        rendered.map_err(template_err)?;
        String::from_utf8(out.0).map_err(|_| Error::Template("the template produced invalid UTF-8".into()))
    }
}

/// A writer that refuses to grow past [`TEMPLATE_MAX_OUTPUT`] (its length then says so).
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > TEMPLATE_MAX_OUTPUT {
            self.0.resize(TEMPLATE_MAX_OUTPUT + 1, 0);
            return Err(std::io::Error::other("the prompt is too long"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
