// The sampler's defaults, for the app's settings (js/settings.js) and for the embedding API
// (ember.mjs) alike. Chosen by measurement (examples/eval.rs; the README's table): on
// SmolLM2-135M, greedy decoding with a mild repetition penalty answered the most questions right
// and never looped, where the model card's low temperature (0.2, top-p 0.9) looped on 8 % and
// was cut at the cap on 12 %.
export const SAMPLER_DEFAULTS = { temperature: 0, top_k: 40, top_p: 0.9, min_p: 0.05, repeat_penalty: 1.1, repeat_window: 64 };
