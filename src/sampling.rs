//! Sampling the next token on the CPU, over the last position's logits.
//!
//! The pipeline, in order: repetition penalty → temperature → softmax → top-k → top-p →
//! min-p → renormalise. The same [`Distribution`] feeds the draw and what the user is shown.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the next token is picked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// The most probable token (temperature 0). The filters still shape what is shown.
    Greedy,
    /// A random draw from the filtered distribution at this temperature.
    Sample {
        /// Divides the logits: below 1 sharpens, above 1 flattens.
        temperature: f32,
    },
}

/// Sampling settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    /// 0 is greedy.
    pub temperature: f32,
    /// Keep the k most probable tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p; 1 keeps all.
    pub top_p: f32,
    /// Drop tokens less probable than `min_p` × the most probable one; 0 keeps all.
    pub min_p: f32,
    /// Divides positive logits (multiplies negative ones) of recently seen tokens; 1 is off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_window: usize,
    /// Seed of the random draw: the same seed and settings give the same tokens.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig { temperature: 0.7, top_k: 40, top_p: 0.9, min_p: 0.05, repeat_penalty: 1.0, repeat_window: 64, seed: 42 }
    }
}

impl SamplingConfig {
    /// Greedy decoding with every filter off.
    pub fn greedy() -> Self {
        SamplingConfig { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0, ..Self::default() }
    }

    /// Rejects settings out of range, naming the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, msg: String| Err(Error::Sampling { name, msg });
        if !(self.temperature.is_finite() && (0.0..=100.0).contains(&self.temperature)) {
            return bad("temperature", format!("{} is not in 0..=100", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("{} is not in (0, 1]", self.top_p));
        }
        if !(0.0..1.0).contains(&self.min_p) {
            return bad("min_p", format!("{} is not in [0, 1)", self.min_p));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0 && self.repeat_penalty <= 10.0) {
            return bad("repeat_penalty", format!("{} is not in (0, 10]", self.repeat_penalty));
        }
        if self.repeat_window > 1 << 20 {
            return bad("repeat_window", format!("{} is too large", self.repeat_window));
        }
        Ok(())
    }

    /// The strategy these settings select.
    pub fn strategy(&self) -> Strategy {
        if self.temperature == 0.0 {
            Strategy::Greedy
        } else {
            Strategy::Sample { temperature: self.temperature }
        }
    }
}

/// Candidates and their probabilities, most probable first, summing to 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    /// `(token id, probability)`.
    pub candidates: Vec<(u32, f32)>,
}

/// Applies llama.cpp's repetition penalty to the tokens of `recent`, each once.
pub fn apply_repeat_penalty(logits: &mut [f32], recent: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = recent.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for id in seen {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// Softmax of `logits / temperature` (temperature 0 counts as 1: greedy shows the model's own
/// distribution), in f64 accumulation for a stable sum.
pub fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| ((l - max) / t).exp()).collect();
    let sum: f64 = exps.iter().map(|&e| f64::from(e)).sum();
    exps.into_iter().map(|e| (f64::from(e) / sum) as f32).collect()
}

fn renormalise(c: &mut [(u32, f32)]) {
    let sum: f64 = c.iter().map(|&(_, p)| f64::from(p)).sum();
    if sum > 0.0 {
        c.iter_mut().for_each(|(_, p)| *p = (f64::from(*p) / sum) as f32);
    }
}

/// Keeps the `k` most probable (0 keeps all).
pub fn top_k(c: &mut Vec<(u32, f32)>, k: usize) {
    if k > 0 && k < c.len() {
        c.truncate(k);
        renormalise(c);
    }
}

/// Keeps the smallest prefix whose probability reaches `p` (at least one token).
pub fn top_p(c: &mut Vec<(u32, f32)>, p: f32) {
    if p >= 1.0 {
        return;
    }
    let mut acc = 0f64;
    let keep = c
        .iter()
        .position(|&(_, q)| {
            acc += f64::from(q);
            acc >= f64::from(p)
        })
        .map_or(c.len(), |i| i + 1);
    c.truncate(keep);
    renormalise(c);
}

/// Drops tokens below `min_p` × the top probability.
pub fn min_p(c: &mut Vec<(u32, f32)>, min_p: f32) {
    if min_p <= 0.0 || c.is_empty() {
        return;
    }
    let floor = c[0].1 * min_p;
    let keep = c.iter().take_while(|&&(_, q)| q >= floor).count().max(1);
    c.truncate(keep);
    renormalise(c);
}

/// The distribution the next token is drawn from, after every stage of the pipeline.
pub fn distribution(logits: &[f32], recent: &[u32], cfg: &SamplingConfig) -> Distribution {
    let mut logits = logits.to_vec();
    let window = &recent[recent.len().saturating_sub(cfg.repeat_window)..];
    apply_repeat_penalty(&mut logits, window, cfg.repeat_penalty);
    let probs = softmax(&logits, cfg.temperature);
    let mut c: Vec<(u32, f32)> = probs.into_iter().enumerate().map(|(i, p)| (i as u32, p)).collect();
    // Most probable first; ties by id, so the order (and greedy's pick) is deterministic.
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if cfg.top_k > 0 && cfg.top_k < c.len() {
        c.select_nth_unstable_by(cfg.top_k - 1, order);
        c.truncate(cfg.top_k);
    }
    c.sort_unstable_by(order);
    renormalise(&mut c);
    top_p(&mut c, cfg.top_p);
    min_p(&mut c, cfg.min_p);
    Distribution { candidates: c }
}

/// One stage of the pipeline, for the classroom view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// `softmax`, `temperature`, `top_k`, `top_p` or `min_p` (the last is the distribution drawn from).
    pub name: &'static str,
    /// Tokens still in the running after this stage.
    pub kept: usize,
    /// Probability of each shown token after this stage (0 once filtered out), in the order of
    /// [`stages`]'s token list.
    pub probs: Vec<f32>,
}

/// The pipeline stage by stage, for the `top_n` most probable tokens: the model's own softmax
/// (after the repetition penalty), then temperature, top-k, top-p and min-p, each renormalised.
/// Computed by the same functions as [`distribution`], whose result is the last stage; at
/// temperature 0 the last stage is the greedy pick alone (the draw is no draw).
pub fn stages(logits: &[f32], recent: &[u32], cfg: &SamplingConfig, top_n: usize) -> (Vec<u32>, Vec<Stage>) {
    let mut logits = logits.to_vec();
    let window = &recent[recent.len().saturating_sub(cfg.repeat_window)..];
    apply_repeat_penalty(&mut logits, window, cfg.repeat_penalty);
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let sorted = |probs: Vec<f32>| {
        let mut c: Vec<(u32, f32)> = probs.into_iter().enumerate().map(|(i, p)| (i as u32, p)).collect();
        c.sort_unstable_by(order);
        c
    };
    let raw = sorted(softmax(&logits, 1.0));
    let shown: Vec<u32> = raw.iter().take(top_n).map(|c| c.0).collect();
    let probs_of = |c: &[(u32, f32)]| shown.iter().map(|id| c.iter().find(|x| x.0 == *id).map_or(0.0, |x| x.1)).collect::<Vec<f32>>();
    let mut out = vec![Stage { name: "softmax", kept: raw.len(), probs: probs_of(&raw) }];
    // Temperature 0 is greedy: the limit of a colder and colder softmax, all on the most probable
    // token (the one `Sampler::pick` takes), which every later stage keeps.
    let mut c = if cfg.temperature == 0.0 { vec![(raw[0].0, 1.0)] } else { sorted(softmax(&logits, cfg.temperature)) };
    out.push(Stage { name: "temperature", kept: c.len(), probs: probs_of(&c) });
    top_k(&mut c, cfg.top_k);
    out.push(Stage { name: "top_k", kept: c.len(), probs: probs_of(&c) });
    top_p(&mut c, cfg.top_p);
    out.push(Stage { name: "top_p", kept: c.len(), probs: probs_of(&c) });
    min_p(&mut c, cfg.min_p);
    out.push(Stage { name: "min_p", kept: c.len(), probs: probs_of(&c) });
    (shown, out)
}

/// xoshiro256**, seeded through splitmix64: small, fast and identical on every platform.
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Picks tokens with one [`SamplingConfig`] and its seeded generator.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplingConfig,
    rng: Rng,
}

/// A pick and the distribution it came from.
#[derive(Debug, Clone)]
pub struct Pick {
    /// The chosen token.
    pub token: u32,
    /// The distribution it was drawn from.
    pub distribution: Distribution,
}

impl Sampler {
    /// A sampler; invalid settings are rejected.
    pub fn new(config: SamplingConfig) -> Result<Self> {
        config.validate()?;
        let rng = Rng::new(config.seed);
        Ok(Sampler { config, rng })
    }

    /// The settings.
    pub fn config(&self) -> &SamplingConfig {
        &self.config
    }

    /// New settings from the next pick on; the random stream goes on where it was.
    pub fn set_config(&mut self, config: SamplingConfig) -> Result<()> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Picks the next token from `logits`, given the `recent` tokens for the penalty.
    pub fn pick(&mut self, logits: &[f32], recent: &[u32]) -> Pick {
        let distribution = distribution(logits, recent, &self.config);
        let token = match self.config.strategy() {
            Strategy::Greedy => distribution.candidates[0].0,
            Strategy::Sample { .. } => self.draw(&distribution),
        };
        Pick { token, distribution }
    }

    /// Draws from the distribution by inverting its cumulative sum.
    fn draw(&mut self, d: &Distribution) -> u32 {
        let u = self.rng.next_f64();
        let mut acc = 0f64;
        for &(id, p) in &d.candidates {
            acc += f64::from(p);
            if u < acc {
                return id;
            }
        }
        // Rounding can leave the sum a hair under 1.
        d.candidates.last().map_or(0, |c| c.0)
    }
}
