//! Chat templates rendered with minijinja against Python jinja2, and hostile templates.

use ember::{ChatTemplate, Message};

use crate::{json, real_metadata};

fn smollm_template() -> ChatTemplate {
    let src: String = real_metadata().req("tokenizer.chat_template").unwrap();
    ChatTemplate::new(&src, "<|im_start|>", "<|im_end|>").unwrap()
}

#[test]
fn renders_the_models_template_like_jinja2() {
    let t = smollm_template();
    let cases = json("chat_template.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 8);
    for c in cases {
        let messages: Vec<Message> = serde_json::from_value(c["messages"].clone()).unwrap();
        let agp = c["add_generation_prompt"].as_bool().unwrap();
        assert_eq!(t.render(&messages, agp).unwrap(), c["text"].as_str().unwrap());
    }
}

#[test]
fn hostile_templates_fail_cleanly() {
    let m = [Message::new("user", "hi")];
    let endless = ChatTemplate::new("{% for i in range(100000000) %}{{ i }}{% endfor %}", "", "").unwrap();
    let e = endless.render(&m, true).unwrap_err().to_string();
    assert!(e.contains("too long") || e.contains("range"), "{e}");

    let deep = ChatTemplate::new("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "", "").unwrap();
    assert!(deep.render(&m, true).is_err());

    let raising = ChatTemplate::new("{{ raise_exception('only user and assistant roles') }}", "", "").unwrap();
    let e = raising.render(&m, true).unwrap_err().to_string();
    assert!(e.contains("only user and assistant roles"), "{e}");

    assert!(ChatTemplate::new("{% if %}", "", "").is_err());
}

#[test]
fn python_string_methods_work() {
    let t = ChatTemplate::new("{% for m in messages %}{{ m.content.strip().upper() }}{% endfor %}", "", "").unwrap();
    assert_eq!(t.render(&[Message::new("user", "  hi  ")], false).unwrap(), "HI");
}

/// `strftime_now` in templates: Python's `time.strftime` of the UTC time, for the directives
/// templates use (make_strftime.py), leap days and a year's last second included.
#[test]
fn strftime_is_pythons() {
    for c in json("strftime.json").as_array().unwrap() {
        let (t, f) = (c["t"].as_i64().unwrap(), c["format"].as_str().unwrap());
        assert_eq!(ember::clock::strftime(f, t), c["text"].as_str().unwrap(), "{f} at {t}");
    }
    // And the template sees today's date.
    let t = ChatTemplate::new("{{ strftime_now('%Y') }}", "", "").unwrap();
    let year = ember::clock::strftime("%Y", ember::clock::unix_s());
    assert_eq!(t.render(&[Message::new("user", "x")], false).unwrap(), year);
}
