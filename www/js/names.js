// Names of models as people write them, from the names of their files.

/** A file or repository name as people write the model's: "SmolLM2-135M-Instruct.Q4_1.gguf" and
 *  "SmolLM2-135M-Instruct-GGUF" → "SmolLM2 135M Instruct" (the format and quantisation go; the
 *  card shows the quantisation). */
export function readable(name) {
  let s = name.replace(/\.gguf$/i, "").replace(/[-_.]gguf$/i, "");
  for (let prev = null; prev !== s;) { prev = s; s = s.replace(/[-_.](i?q\d\w*|f16|f32|bf16)$/i, ""); }
  return s.replace(/[-_]+/g, " ").trim() || name;
}
