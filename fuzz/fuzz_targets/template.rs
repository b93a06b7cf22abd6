//! Chat-template rendering with hostile templates (endless loops, huge outputs, deep recursion,
//! macros calling themselves) and hostile messages. minijinja's fuel, its recursion limit and
//! Ember's output cap must turn each into an error.
#![no_main]
use arbitrary::Arbitrary;
use ember::{ChatTemplate, Message};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    template: String,
    messages: Vec<(u8, String)>,
    add_generation_prompt: bool,
}

fuzz_target!(|input: Input| {
    let Ok(t) = ChatTemplate::new(&input.template, "<s>", "</s>") else { return };
    let roles = ["system", "user", "assistant"];
    let messages: Vec<Message> =
        input.messages.iter().map(|(r, c)| Message::new(roles[*r as usize % 3], c)).collect();
    let _ = t.render(&messages, input.add_generation_prompt);
});
