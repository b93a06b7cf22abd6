//! The sampler: each filter on hand-made distributions, seeded determinism, bad settings.

use ember::sampling::{distribution, softmax, Sampler, SamplingConfig};
use ember::Error;

fn cfg(temperature: f32, top_k: usize, top_p: f32, min_p: f32) -> SamplingConfig {
    SamplingConfig { temperature, top_k, top_p, min_p, repeat_penalty: 1.0, repeat_window: 64, seed: 7 }
}

/// Logits whose softmax is exactly `probs`.
fn logits_of(probs: &[f32]) -> Vec<f32> {
    probs.iter().map(|p| p.ln()).collect()
}

fn ids(c: &[(u32, f32)]) -> Vec<u32> {
    c.iter().map(|x| x.0).collect()
}

#[test]
fn softmax_matches_hand_values() {
    let p = softmax(&[0.0, (2f32).ln(), (5f32).ln()], 1.0);
    crate::assert_close(&p, &[0.125, 0.25, 0.625], 1e-6, "softmax");
    // Temperature 2 halves the logits: probabilities become proportional to sqrt.
    let p = softmax(&[0.0, (4f32).ln()], 2.0);
    crate::assert_close(&p, &[1.0 / 3.0, 2.0 / 3.0], 1e-6, "temperature");
}

#[test]
fn each_filter_keeps_what_it_should() {
    let l = logits_of(&[0.05, 0.4, 0.1, 0.3, 0.15]);
    let all = distribution(&l, &[], &cfg(1.0, 0, 1.0, 0.0));
    assert_eq!(ids(&all.candidates), vec![1, 3, 4, 2, 0]);

    let k2 = distribution(&l, &[], &cfg(1.0, 2, 1.0, 0.0));
    assert_eq!(ids(&k2.candidates), vec![1, 3]);
    crate::assert_close(&[k2.candidates[0].1, k2.candidates[1].1], &[0.4 / 0.7, 0.3 / 0.7], 1e-6, "top-k renormalised");

    // 0.4 + 0.3 = 0.7 < 0.75, + 0.15 reaches it.
    let p = distribution(&l, &[], &cfg(1.0, 0, 0.75, 0.0));
    assert_eq!(ids(&p.candidates), vec![1, 3, 4]);
    let p = distribution(&l, &[], &cfg(1.0, 0, 0.65, 0.0));
    assert_eq!(ids(&p.candidates), vec![1, 3]);
    let p = distribution(&l, &[], &cfg(1.0, 0, 0.3, 0.0));
    assert_eq!(ids(&p.candidates), vec![1], "at least the top token stays");

    // min_p 0.3 × 0.4 = 0.12: 0.15 stays, 0.1 and 0.05 go.
    let m = distribution(&l, &[], &cfg(1.0, 0, 1.0, 0.3));
    assert_eq!(ids(&m.candidates), vec![1, 3, 4]);
    let sum: f32 = m.candidates.iter().map(|c| c.1).sum();
    assert!((sum - 1.0).abs() < 1e-6);
}

#[test]
fn repetition_penalty_lowers_seen_tokens() {
    let l = vec![2.0, 1.9, -1.0];
    let mut c = cfg(1.0, 0, 1.0, 0.0);
    c.repeat_penalty = 1.5;
    let d = distribution(&l, &[0, 2, 0], &c);
    // Token 0: 2.0 / 1.5 = 1.333 < 1.9, so token 1 leads; token 2: -1.0 × 1.5.
    assert_eq!(ids(&d.candidates), vec![1, 0, 2]);
    let want = softmax(&[2.0 / 1.5, 1.9, -1.5], 1.0);
    crate::assert_close(&[d.candidates[1].1], &[want[0]], 1e-6, "penalised probability");
    // Outside the window, no penalty.
    c.repeat_window = 1;
    let d = distribution(&l, &[0, 2, 1], &c);
    assert_eq!(d.candidates[0].0, 0);
}

#[test]
fn greedy_picks_the_argmax_and_shows_the_distribution() {
    let l = logits_of(&[0.2, 0.5, 0.3]);
    let mut s = Sampler::new(SamplingConfig::greedy()).unwrap();
    let p = s.pick(&l, &[]);
    assert_eq!(p.token, 1);
    crate::assert_close(&[p.distribution.candidates[0].1], &[0.5], 1e-6, "shown probability");
}

#[test]
fn the_same_seed_gives_the_same_tokens_and_draws_follow_the_distribution() {
    let l = logits_of(&[0.1, 0.2, 0.3, 0.4]);
    let run = |seed| {
        let mut c = cfg(1.0, 0, 1.0, 0.0);
        c.seed = seed;
        let mut s = Sampler::new(c).unwrap();
        (0..4000).map(|_| s.pick(&l, &[]).token).collect::<Vec<_>>()
    };
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
    for (tok, p) in [0.1, 0.2, 0.3, 0.4].iter().enumerate() {
        let freq = a.iter().filter(|&&t| t == tok as u32).count() as f32 / a.len() as f32;
        assert!((freq - p).abs() < 0.03, "token {tok}: frequency {freq}, probability {p}");
    }
    // A filtered-out token is never drawn.
    let mut s = Sampler::new(cfg(1.0, 2, 1.0, 0.0)).unwrap();
    assert!((0..500).all(|_| s.pick(&l, &[]).token >= 2));
}

#[test]
fn invalid_settings_are_rejected_by_name() {
    let cases: [(SamplingConfig, &str); 6] = [
        (cfg(-1.0, 0, 1.0, 0.0), "temperature"),
        (cfg(f32::NAN, 0, 1.0, 0.0), "temperature"),
        (cfg(1.0, 0, 0.0, 0.0), "top_p"),
        (cfg(1.0, 0, 1.5, 0.0), "top_p"),
        (cfg(1.0, 0, 1.0, 1.0), "min_p"),
        (SamplingConfig { repeat_penalty: 0.0, ..cfg(1.0, 0, 1.0, 0.0) }, "repeat_penalty"),
    ];
    for (c, want) in cases {
        match Sampler::new(c) {
            Err(Error::Sampling { name, .. }) => assert_eq!(name, want),
            other => panic!("{want}: {other:?}"),
        }
    }
}

#[test]
fn the_pipeline_stage_by_stage_ends_in_the_distribution_drawn_from() {
    use ember::sampling::stages;
    let l = logits_of(&[0.05, 0.4, 0.1, 0.3, 0.15]);
    let c = cfg(1.0, 3, 0.75, 0.3);
    let (shown, st) = stages(&l, &[], &c, 4);
    assert_eq!(shown, vec![1, 3, 4, 2]);
    assert_eq!(st.iter().map(|s| s.name).collect::<Vec<_>>(), ["softmax", "temperature", "top_k", "top_p", "min_p"]);
    assert_eq!(st.iter().map(|s| s.kept).collect::<Vec<_>>(), [5, 5, 3, 2, 2]);
    crate::assert_close(&st[0].probs, &[0.4, 0.3, 0.15, 0.1], 1e-6, "softmax");
    crate::assert_close(&st[2].probs, &[0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0.0], 1e-6, "top-k 3, renormalised");
    // 0.4/0.85 + 0.3/0.85 = 0.82 reaches 0.75 with two tokens.
    crate::assert_close(&st[3].probs, &[0.4 / 0.7, 0.3 / 0.7, 0.0, 0.0], 1e-6, "top-p");
    crate::assert_close(&st[4].probs, &st[3].probs, 1e-6, "min-p 0.3 keeps both");
    let d = distribution(&l, &[], &c);
    crate::assert_close(&st[4].probs[..2], &d.candidates.iter().map(|x| x.1).collect::<Vec<_>>(), 1e-6, "the last stage is what is drawn from");

    // Temperature 2: probabilities proportional to the square roots; the model's own softmax is unchanged.
    let (_, hot) = stages(&l, &[], &cfg(2.0, 0, 1.0, 0.0), 4);
    crate::assert_close(&hot[0].probs, &st[0].probs, 1e-6, "softmax ignores temperature");
    let z: f32 = [0.05f32, 0.4, 0.1, 0.3, 0.15].iter().map(|p| p.sqrt()).sum();
    crate::assert_close(&hot[1].probs, &[0.4f32.sqrt() / z, 0.3f32.sqrt() / z, 0.15f32.sqrt() / z, 0.1f32.sqrt() / z], 1e-6, "temperature 2");

    // Temperature 0 is greedy: every stage after the softmax holds the pick alone, at 1.
    let greedy = cfg(0.0, 3, 0.75, 0.3);
    let (_, cold) = stages(&l, &[], &greedy, 4);
    assert_eq!(cold.iter().map(|s| s.kept).collect::<Vec<_>>(), [5, 1, 1, 1, 1]);
    assert_eq!(cold[4].probs, [1.0, 0.0, 0.0, 0.0], "the last stage: the most probable token");
    assert_eq!(Sampler::new(greedy).unwrap().pick(&l, &[]).token, shown[0], "which is greedy's pick");
}
