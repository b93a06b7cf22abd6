//! Structured output (issue 21): under a JSON schema every answer parses and validates, for
//! SmolLM2 on the CPU, 10 prompts × 3 schemas (`tests/fixtures/json-schemas.json`, which the
//! browser test shares), greedy; the mask's cost is reported.

use ember::grammar::Grammar;
use ember::{Engine, GenerateOptions, LoadOptions, Message, Prompt, SamplingConfig};
use serde_json::Value;

use crate::{json, real_model};

/// Why `v` is not valid against `schema`, for the keywords the fixture's schemas use.
pub fn invalid(v: &Value, schema: &Value, at: &str) -> Option<String> {
    let fail = |why: &str| Some(format!("{at}: {why} ({v})"));
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(v) {
            return fail("not in the enum");
        }
    }
    let ok_type = match schema["type"].as_str() {
        None => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some(t) => return fail(&format!("the test does not know type {t}")),
    };
    if !ok_type {
        return fail("wrong type");
    }
    if let Some(n) = v.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|m| n < m) || schema["maximum"].as_f64().is_some_and(|m| n > m) {
            return fail("out of range");
        }
    }
    if let Some(s) = v.as_str() {
        if schema["maxLength"].as_u64().is_some_and(|m| s.chars().count() as u64 > m) {
            return fail("too long");
        }
    }
    if let Some(items) = v.as_array() {
        if schema["minItems"].as_u64().is_some_and(|m| (items.len() as u64) < m) || schema["maxItems"].as_u64().is_some_and(|m| items.len() as u64 > m) {
            return fail("wrong number of items");
        }
        return items.iter().enumerate().find_map(|(i, x)| invalid(x, &schema["items"], &format!("{at}[{i}]")));
    }
    if let Some(o) = v.as_object() {
        let props = schema["properties"].as_object().cloned().unwrap_or_default();
        if let Some(missing) = schema["required"].as_array().into_iter().flatten().find(|k| !o.contains_key(k.as_str().unwrap_or(""))) {
            return fail(&format!("lacks {missing}"));
        }
        if schema["additionalProperties"] == Value::Bool(false) {
            if let Some(extra) = o.keys().find(|k| !props.contains_key(*k)) {
                return fail(&format!("has {extra}"));
            }
        }
        return o.iter().find_map(|(k, x)| props.get(k).and_then(|s| invalid(x, s, &format!("{at}.{k}"))));
    }
    None
}

#[test]
fn every_answer_under_a_json_schema_parses_and_validates() {
    let fx = json("json-schemas.json");
    let mut e = Engine::load(&std::fs::read(real_model()).unwrap(), ember::backend::Device::Cpu, LoadOptions::default()).unwrap();
    let (mut steps, mut mask_s, mut decode_s) = (0usize, 0f64, 0f64);
    for (name, schema) in fx["schemas"].as_object().unwrap() {
        for prompt in fx["prompts"].as_array().unwrap() {
            let messages = vec![Message::new("user", &format!("Answer in JSON ({name}): {}", prompt.as_str().unwrap()))];
            let sampling = SamplingConfig { repeat_penalty: 1.1, ..SamplingConfig::greedy() };
            let o = GenerateOptions { sampling, max_tokens: 160, grammar: Some(Grammar::JsonSchema { schema: schema.clone() }), ..GenerateOptions::default() };
            e.start(&Prompt::Chat(messages), o).unwrap();
            while e.next().unwrap().is_some() {}
            let text = e.text().to_string();
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{name}, {prompt}: {text:?} does not parse: {err}"));
            assert_eq!(invalid(&v, schema, name), None, "{prompt}: {text}");
            let s = e.stats();
            steps += s.decode_tokens + 1;
            mask_s += s.mask_s;
            decode_s += s.decode_s;
        }
    }
    // The budget is a tenth of a decode step; measured here in the dev profile, on the
    // record, and in the benchmark's release build.
    eprintln!("mask: {:.2} ms a token against {:.2} ms a decode step", 1e3 * mask_s / steps as f64, 1e3 * decode_s / steps as f64);
}

/// A schema llguidance cannot compile, or a grammar that is not one, is a clear error at start.
#[test]
fn a_bad_grammar_is_an_error_at_start() {
    let mut e = crate::engine::tiny_engine();
    for g in [Grammar::Regex { pattern: "(".into() }, Grammar::JsonSchema { schema: serde_json::json!({ "type": "no such type" }) }] {
        let o = GenerateOptions { grammar: Some(g.clone()), ..GenerateOptions::default() };
        let err = e.start(&Prompt::Text("the".into()), o).unwrap_err();
        assert_eq!(err.kind(), "bad_setting", "{g:?}: {err}");
    }
}
