//! Chat: the model's own `tokenizer.chat_template`, rendered with minijinja.

use minijinja::{context, Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Bounds a hostile template's work (loops, huge outputs) and recursion.
const TEMPLATE_FUEL: u64 = 5_000_000;
const TEMPLATE_MAX_OUTPUT: usize = 4 << 20;

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
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source.to_string()).map_err(template_err)?;
        Ok(ChatTemplate { env, bos: bos.to_string(), eos: eos.to_string() })
    }

    /// The exact prompt text for `messages`; with `add_generation_prompt`, it ends where the
    /// assistant's answer begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let t = self.env.get_template("chat").map_err(template_err)?;
        let out = t
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos,
                eos_token => &self.eos,
            })
            .map_err(template_err)?;
        if out.len() > TEMPLATE_MAX_OUTPUT {
            return Err(Error::Template(format!("the template produced {} bytes of prompt", out.len())));
        }
        Ok(out)
    }
}
