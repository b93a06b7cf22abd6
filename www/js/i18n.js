// The UI's words in English and 简体中文. The language comes from ?lang=, then the saved
// choice, then the browser's; elements carry data-i18n (text), data-i18n-label (aria-label)
// and data-i18n-placeholder.
const STRINGS = {
  en: {
    title: "Ember", conversations: "Conversations", newChat: "New chat", importChat: "Import",
    rename: "Rename conversation", delete: "Delete conversation", conversationTitle: "Conversation title",
    confirmDelete: "Delete this conversation? This cannot be undone.", untitled: "New conversation",
    message: "Message", messagePlaceholder: "Ask something… (Enter sends, Shift+Enter adds a line, Esc stops)",
    messagePlaceholderCompletion: "Write the start of a text; the model continues it (Enter sends, Esc stops)", completion: "completion mode",
    send: "Send", stop: "Stop", regenerate: "Regenerate", edit: "Edit message", saveSend: "Save & send", cancel: "Cancel",
    previous: "Previous version", next: "Next version", copyCode: "Copy code", copied: "Copied",
    systemPrompt: "System prompt", systemHint: "Steers the model in this conversation. Empty: the model's own default.",
    exportJson: "Export JSON", exportMd: "Export Markdown", language: "Language",
    settings: "Settings", model: "Model", close: "Close", reset: "Reset to defaults",
    temperature: "Temperature", top_k: "Top-k", top_p: "Top-p", min_p: "Min-p", repeat_penalty: "Repetition penalty",
    max_tokens: "Max new tokens", seed: "Seed (empty: random)",
    catalogTitle: "Models to try", catalogHint: "Each is one GGUF file from Hugging Face, downloaded only when you choose it and then kept on this device for offline use. Whether it fits is estimated before anything is downloaded.",
    catalogLoad: "Load", catalogLoaded: "Loaded", catalogHere: "served by this site", catalogThinking: "thinks before it answers",
    fit_ok: "Fits this device (needs about {need} MB of memory).", fit_tight: "Tight: needs about {need} MB, close to this device's memory.", fit_no: "Too large for this device (needs about {need} MB of memory).",
    fit_nostore: "Not enough storage to keep it: it loads, but is downloaded again next time.",
    thinkingSetting: "Think before answering (a reasoning model writes its thinking first)", thinking: "Thinking…", thought: "Thinking", card_thinking: "Thinking",
    thinkingYes: "a reasoning model: it can think before it answers (Settings)", thinkingNo: "no",
    settingsHint: "Lower temperature: more predictable; 0 always takes the most likely token (the default: it answered best, measured). Regenerate then draws at 0.7, for another answer. Top-k, top-p and min-p cut unlikely tokens before sampling; the repetition penalty (1.1) keeps small models from looping.",
    modelUrl: "Model URL", loadUrl: "Load from URL", modelFile: "Open model files", modelFolder: "Open a model folder", backend: "Backend",
    backendAuto: "Automatic", dropHint: "Drop a .gguf file, or a model's files, to load it",
    modelHint: "A GGUF file, or a Hugging Face model folder (config.json, tokenizer.json, *.safetensors), from a URL (Hugging Face: …/resolve/main/file.gguf, or …/resolve/main/ for a folder) or from this computer. Llama (2 and 3.x), Qwen2 and Qwen3, Gemma 3, SmolLM3, Phi-3 and GPT-2 models run. It stays on this machine.",
    errFolderMissing: "The model folder has no {name}.", errPickedFiles: "Pick one .gguf file, or a model folder's files (config.json, tokenizer.json, *.safetensors).",
    completionMode: "This is a base model (no chat template): completion mode. It continues your text as one document; the system prompt is not used.",
    card_format: "Format", card_mode: "Mode", modeChat: "chat (its own template)", modeCompletion: "completion (a base model)", card_positions: "Positions", posRope: "RoPE, θ = {theta}", posLearned: "learned", posPartial: "on {n} of {of} dims per head", posLongRope: "LongRoPE ({which} factors: first trained on {orig} positions)", lrShort: "short", lrLong: "long",
    card_attention: "Attention", attnHeadWidth: "heads {n} wide", attnQkNorm: "QK-norm", attnGlobal: "every layer sees the whole context",
    attnWindow: "local layers see the last {window} tokens (every {every}th layer sees all; local RoPE θ = {theta})",
    starting: "Starting…", downloading: "Downloading", reading: "Reading the file", parsing: "Parsing", uploading: "Uploading weights", tensors: "tensors",
    warming: "Warming up", loadedIn: "loaded in {s} s", onGpu: "on WebGPU", onCpu: "on the CPU, 1 thread", onCpuThreads: "on the CPU, {n} threads",
    whyForced: "as asked", whyNoGpu: "this browser has no WebGPU", whyNoAdapter: "no WebGPU adapter",
    whyGpuFailed: "WebGPU failed: {m}", generating: "Generating…", prefilling: "Reading the prompt {d}/{t}",
    params: "{n} parameters", stopped: "stopped", interrupted: "interrupted: regenerate to finish", interruptedContinue: "interrupted", stoppedRepeating: "stopped: the model was repeating itself", cutOff: "cut off at the length limit", continue: "Continue",
    contextMeter: "Context: {n} / {limit} tokens", trimmed: "{n} earlier messages are left out of the prompt to fit the context window.", trimmedOne: "The earliest message is left out of the prompt to fit the context window.",
    tooLong: "This message is too long for the context window ({n} tokens needed, {limit} available).",
    err_unsupported_arch: "This model's architecture, {name}, is not one Ember runs. Ember runs {supported}.", err_bad_gguf: "This is not a valid GGUF model file: {detail}.", err_truncated: "The file ends before the model does: it is incomplete, perhaps a download cut short. Download it again.", err_unsupported_type: "This file stores weights as {type}, which Ember does not read yet. Pick a file of another quantisation (Ember reads {supported}).", err_bad_format: "The model folder has a problem: {detail}.", err_missing_key: "The model file lacks a setting it needs ({key}).", err_bad_key: "The model file has an unusable setting, {key}: {detail}.", err_unsupported: "Ember cannot run this model: {detail}.", err_bad_tensor: "The model's weights have a problem: {name} {detail}.", err_tokenizer: "The model's tokenizer could not be built: {detail}.", err_template: "The model's chat template could not be used: {detail}.", err_bad_setting: "A setting is out of range: {name} {detail}.", err_not_started: "Nothing is being generated.", err_device: "The GPU failed: {detail}.", err_io: "The file could not be read: {detail}.", err_context_full: "This is too long for the context window ({needed} tokens needed, {limit} available).",
    err_too_large: "The model is too large for this device: its weights need about {needed_mb} MB, and {limit_mb} MB are allowed.",
    statsLine: "first token {ttft} s · prompt {pt} tok/s · {dt} tok/s · {n} tokens",
    engineRestarted: "The engine stopped ({m}); it was restarted on the CPU.",
    errTitle: "Error", errNotFound: "The model was not found (HTTP 404) at {url}.",
    errHttp: "The model could not be downloaded: HTTP {status} from {url}.",
    errNetwork: "The model could not be downloaded from {url}: the server does not allow this page to read it (CORS), or it cannot be reached.",
    errGpuMemory: "The GPU ran out of memory loading this model ({m}). The CPU may hold it: slower, but it works.",
    useCpu: "Use the CPU", whyGpuMemory: "the GPU ran out of memory for this model",
    errHtml: "That URL returned a web page, not a model file. For Hugging Face, use a …/resolve/main/…gguf link.",
    errNotGguf: "This is not a GGUF model file.", errImport: "This file is not an Ember conversation: {m}",
    errStorage: "Conversations cannot be saved here ({m}); this chat continues in memory only.",
    keepsOld: "The previous model stays loaded.", modelCard: "Model card",
    card_arch: "Architecture", card_params: "Parameters", card_layers: "Layers", card_heads: "Heads / KV heads",
    card_width: "Embedding width", card_ffn: "FFN width", card_vocab: "Vocabulary", card_ctx: "Context used / trained",
    card_quant: "Tensor types", errDelete: "{name} could not be deleted ({m}). Close other tabs of this app, then try again.", copyMessage: "Copy message", copy: "Copy", copyFailed: "Not copied", emptyHint: "Ask anything, or try one of these. Everything runs in this tab: nothing you type leaves this computer.", emptyHintBase: "This is a base model: write the start of a text and it continues it.", examples: "What is the capital of France?|Write a haiku about the sea.|Explain in one sentence how a rainbow forms.|What is 12 times 7?", langNotice: "This model was trained for {langs}: its answers in {ui} may be poor or repeat themselves.", closeMenu: "Close the list", backendHint: "Changing it loads the model again on that backend.", endChip: "⏹ end of answer", card_size: "File size", card_filename: "Name in the file", card_weights: "Weights in memory", gpuCounted: "GPU, as allocated", card_wasm: "Engine memory (wasm, after loading)", card_license: "Licence", card_org: "Made by", card_langs: "Languages", card_data: "Training data", notStated: "not stated in this file", card_backend: "Backend", cardCpu: "CPU (wasm, 1 thread)", cardCpuThreads: "CPU (wasm, {n} threads)", cardCpuFailed: "CPU (wasm, 1 thread: the threaded engine did not start: {m})", card_load: "Load time", card_gpuCalls: "WebGPU calls per decoded token", gpuCallsText: "dispatches {dispatches} · submits {submits} · bind groups {bind_groups} · writes {writes} · readbacks {readbacks} ({readback_bytes} bytes)", gpuCallsNone: "counted after the first answer",
    honesty: "A small language model: it can be wrong, it knows nothing after its training data, and it is not a search engine.",
    conversationsList: "Saved conversations", menu: "Menu",
    cache: "Reading the stored model",
    errInterrupted: "The download of {url} was interrupted after {got} MB. Try again: it continues where it stopped.",
    errChecksum: "The downloaded file from {url} is corrupt (its SHA-256 does not match); it was discarded.",
    errQuota: "The model ({need} MB) does not fit in this browser's storage ({free} MB free): it is loaded but not kept for offline use.",
    errCache: "The model cannot be stored in this browser ({m}): it is loaded but not kept for offline use.",
    updateReady: "A new version of Ember is ready.", reload: "Reload",
    storage: "Storage on this device", storedModels: "Stored models", noModels: "No model stored yet.",
    deleteModel: "Delete stored model", storageUsed: "{used} MB used of {quota} MB available to this site.", storagePersisted: "The browser keeps it until you delete it.", storageMayClear: "The browser may clear it when space runs short; a model is then downloaded again.",
    deleteAllChats: "Delete all conversations", confirmDeleteAll: "Delete every conversation on this device? This cannot be undone.",
    partial: "incomplete download", verified: "SHA-256 verified",
    classroom: "Classroom", step: "Step", play: "Play", pause: "Pause", delay: "Delay",
    keysHint: "Keys: → or . takes one step, p plays and pauses. Click a candidate to choose it yourself.",
    nextToken: "Next token", computing: "Computing the next token…", sendFirst: "Send a message, then take it one token at a time.",
    nextHint: "The candidates the next token is drawn from, after the sampler pipeline.", nextHintGreedy: "Temperature 0: nothing is drawn, the most probable token is taken (greedy). The model's own probabilities are in the pipeline's first column.", force: "Choose",
    pipeline: "Sampler pipeline", stage_softmax: "Model (softmax)", stage_temperature: "Temperature", stage_top_k: "Top-k",
    stage_top_p: "Top-p", stage_min_p: "Min-p → drawn from", kept: "{n} kept", off: "off",
    tokenDetails: "A generated token", tokenHint: "Point at or focus a token of the answer to see what else the model considered.",
    tokenInfo: "Token {n}: “{tok}” (id {id}), probability {p}.", forced: "chosen by hand", branchHere: "Continue with",
    branchHint: "Click another candidate to continue from there; the earlier answer stays, under ‹ ›.",
    legend: "Probability:", tokenisation: "Tokens", yourText: "Your message", promptSeen: "What the model sees (chat template)",
    promptTokens: "{n} of {limit} tokens", draftTokens: "{n} tokens", aboutModel: "How a GPT works",
    exportTraceJson: "Export trace (JSON)", exportTraceCsv: "Export trace (CSV)",
    h_model: "Model", h_layers: "Layers", h_width: "Width", h_heads: "Heads", h_ctx: "Context", h_params: "Parameters", h_this: "This model",
    x_next_title: "Next-token prediction",
    x_next: "A GPT reads the text so far and gives every token of its vocabulary a probability of coming next. One token is picked (the most probable, or a random draw shaped by temperature, top-k, top-p and min-p), added to the text, and the whole thing repeats. That is all it does: answers, code and poems are built one token at a time.",
    x_bert_title: "GPT and BERT",
    x_bert: "A GPT reads left to right and predicts the next token: it is made to write. A BERT sees the whole sentence at once and fills in blanks (“The [MASK] is blue” → sky): it is made to understand and classify, not to write.",
    x_train_title: "How a chat model is made",
    x_train: "Pre-training: next-token prediction over a huge amount of text teaches language and facts. Supervised fine-tuning (SFT): examples of good conversations teach it to answer. Preference tuning: it learns which of two answers people prefer. SmolLM2-Instruct was tuned with SFT, then DPO (direct preference optimisation); ChatGPT used a reward model and PPO (reinforcement learning from human feedback).",
    x_limits_title: "What it cannot do",

  },
  zh: {
    title: "Ember", conversations: "对话", newChat: "新对话", importChat: "导入",
    rename: "重命名对话", delete: "删除对话", conversationTitle: "对话标题",
    confirmDelete: "删除此对话？此操作无法撤销。", untitled: "新对话",
    message: "消息", messagePlaceholder: "输入问题…（Enter 发送，Shift+Enter 换行，Esc 停止）",
    messagePlaceholderCompletion: "写下一段文字的开头，模型会接着写（Enter 发送，Esc 停止）", completion: "续写模式",
    send: "发送", stop: "停止", regenerate: "重新生成", edit: "编辑消息", saveSend: "保存并发送", cancel: "取消",
    previous: "上一个版本", next: "下一个版本", copyCode: "复制代码", copied: "已复制",
    systemPrompt: "系统提示词", systemHint: "引导模型在本对话中的行为。留空：使用模型自带的默认值。",
    exportJson: "导出 JSON", exportMd: "导出 Markdown", language: "语言",
    settings: "设置", model: "模型", close: "关闭", reset: "恢复默认",
    temperature: "温度", top_k: "Top-k", top_p: "Top-p", min_p: "Min-p", repeat_penalty: "重复惩罚",
    max_tokens: "最多新词元数", seed: "随机种子（留空：随机）",
    catalogTitle: "可以试试的模型", catalogHint: "每个都是 Hugging Face 上的一个 GGUF 文件，只在你选择时下载，之后保存在本设备上供离线使用。下载前会先估算它是否装得下。",
    catalogLoad: "加载", catalogLoaded: "已加载", catalogHere: "由本站提供", catalogThinking: "会先思考再回答",
    fit_ok: "本设备装得下（约需 {need} MB 内存）。", fit_tight: "偏紧：约需 {need} MB，接近本设备的内存。", fit_no: "对本设备来说太大（约需 {need} MB 内存）。",
    fit_nostore: "存储空间不够保存它：可以加载，但下次需要重新下载。",
    thinkingSetting: "先思考再回答（推理模型会先写出思考过程）", thinking: "思考中…", thought: "思考过程", card_thinking: "思考",
    thinkingYes: "推理模型：可以先思考再回答（见设置）", thinkingNo: "否",
    settingsHint: "温度越低，输出越可预测；为 0 时总是取最可能的词元（默认值：实测回答最好）。此时“重新生成”以 0.7 的温度抽样，给出另一个回答。Top-k、Top-p 和 Min-p 在采样前去掉不太可能的词元；重复惩罚（1.1）防止小模型陷入循环。",
    modelUrl: "模型网址", loadUrl: "从网址加载", modelFile: "打开模型文件", modelFolder: "打开模型文件夹", backend: "后端",
    backendAuto: "自动", dropHint: "拖放 .gguf 文件或模型的文件以加载",
    modelHint: "GGUF 文件，或 Hugging Face 模型文件夹（config.json、tokenizer.json、*.safetensors），可来自网址（Hugging Face：…/resolve/main/file.gguf，文件夹用 …/resolve/main/）或本机。支持 Llama（2 与 3.x）、Qwen2 与 Qwen3、Gemma 3、SmolLM3、Phi-3 和 GPT-2 模型。文件只留在本机。",
    errFolderMissing: "模型文件夹中没有 {name}。", errPickedFiles: "请选择一个 .gguf 文件，或模型文件夹中的文件（config.json、tokenizer.json、*.safetensors）。",
    completionMode: "这是基础模型（没有对话模板）：续写模式。它把你的文字当作一篇文档接着写；不使用系统提示。",
    card_format: "格式", card_mode: "模式", modeChat: "对话（自带模板）", modeCompletion: "续写（基础模型）", card_positions: "位置编码", posRope: "RoPE，θ = {theta}", posLearned: "可学习", posPartial: "每个头 {of} 维中的 {n} 维", posLongRope: "LongRoPE（{which}因子：原训练长度 {orig}）", lrShort: "短", lrLong: "长",
    card_attention: "注意力", attnHeadWidth: "每个头宽 {n}", attnQkNorm: "QK 归一化", attnGlobal: "每一层都看整个上下文",
    attnWindow: "局部层只看最近 {window} 个词元（每第 {every} 层看全部；局部 RoPE θ = {theta}）",
    starting: "正在启动…", downloading: "正在下载", reading: "正在读取文件", parsing: "正在解析", uploading: "正在上传权重", tensors: "个张量",
    warming: "正在预热", loadedIn: "加载用时 {s} 秒", onGpu: "运行于 WebGPU", onCpu: "运行于 CPU（单线程）", onCpuThreads: "运行于 CPU（{n} 个线程）",
    whyForced: "按要求", whyNoGpu: "此浏览器不支持 WebGPU", whyNoAdapter: "没有可用的 WebGPU 适配器",
    whyGpuFailed: "WebGPU 失败：{m}", generating: "正在生成…", prefilling: "正在读取提示 {d}/{t}",
    params: "{n} 参数", stopped: "已停止", interrupted: "已中断：重新生成以完成", interruptedContinue: "已中断", stoppedRepeating: "已停止：模型在重复自己", cutOff: "已达长度上限，回答被截断", continue: "继续",
    contextMeter: "上下文：{n} / {limit} 个词元", trimmed: "为适应上下文窗口，提示中省略了较早的 {n} 条消息。", trimmedOne: "为适应上下文窗口，提示中省略了最早的一条消息。",
    tooLong: "此消息超出上下文窗口（需要 {n} 个词元，可用 {limit} 个）。",
    err_unsupported_arch: "这个模型的架构 {name} 不在 Ember 支持之列。Ember 支持：{supported}。", err_bad_gguf: "这不是有效的 GGUF 模型文件。（技术细节：{detail}）", err_truncated: "文件在模型结束之前就结束了：文件不完整，可能是下载中断。请重新下载。", err_unsupported_type: "这个文件以 {type} 格式存储权重，Ember 目前无法读取。请选择其他量化格式的文件（Ember 支持：{supported}）。", err_bad_format: "模型文件夹有问题。（技术细节：{detail}）", err_missing_key: "模型文件缺少必需的设置（{key}）。", err_bad_key: "模型文件中的设置 {key} 不可用。（技术细节：{detail}）", err_unsupported: "Ember 无法运行这个模型。（技术细节：{detail}）", err_bad_tensor: "模型权重 {name} 有问题。（技术细节：{detail}）", err_tokenizer: "无法构建模型的分词器。（技术细节：{detail}）", err_template: "无法使用模型的对话模板。（技术细节：{detail}）", err_bad_setting: "设置 {name} 超出范围。（技术细节：{detail}）", err_not_started: "当前没有在生成。", err_device: "GPU 出错。（技术细节：{detail}）", err_io: "无法读取文件。（技术细节：{detail}）", err_context_full: "内容超出上下文窗口（需要 {needed} 个词元，可用 {limit} 个）。",
    err_too_large: "模型对此设备来说太大：其权重约需 {needed_mb} MB，而只允许 {limit_mb} MB。",
    statsLine: "首个词元 {ttft} 秒 · 提示 {pt} 词元/秒 · {dt} 词元/秒 · {n} 个词元",
    engineRestarted: "引擎已停止（{m}），已在 CPU 上重新启动。",
    errTitle: "错误", errNotFound: "找不到模型（HTTP 404）：{url}。",
    errHttp: "无法下载模型：{url} 返回 HTTP {status}。",
    errNetwork: "无法从 {url} 下载模型：服务器不允许本页面读取（CORS），或无法连接。",
    errGpuMemory: "加载此模型时 GPU 内存不足（{m}）。CPU 也许能运行它：较慢，但可用。",
    useCpu: "使用 CPU", whyGpuMemory: "GPU 内存不足，无法运行此模型",
    errHtml: "该网址返回的是网页，而不是模型文件。Hugging Face 请使用 …/resolve/main/…gguf 链接。",
    errNotGguf: "这不是 GGUF 模型文件。", errImport: "此文件不是 Ember 对话：{m}",
    errStorage: "无法在此保存对话（{m}）；本次对话仅保存在内存中。",
    keepsOld: "之前的模型仍然可用。", modelCard: "模型卡",
    card_arch: "架构", card_params: "参数量", card_layers: "层数", card_heads: "注意力头 / KV 头",
    card_width: "嵌入维度", card_ffn: "前馈层维度", card_vocab: "词表大小", card_ctx: "使用 / 训练上下文",
    card_quant: "张量类型", errDelete: "无法删除 {name}（{m}）。请关闭本应用的其他标签页后重试。", copyMessage: "复制消息", copy: "复制", copyFailed: "未能复制", emptyHint: "随便问点什么，或者试试下面的例子。一切都在这个标签页里运行：你输入的内容不会离开这台电脑。", emptyHintBase: "这是一个基础模型：写下一段文字的开头，它会接着写。", examples: "法国的首都是哪里？|写一首关于大海的俳句。|用一句话解释彩虹是怎么形成的。|12 乘以 7 等于多少？", langNotice: "这个模型是为{langs}训练的：它用{ui}回答时可能效果很差或不断重复。", closeMenu: "关闭列表", backendHint: "更改后会在该后端上重新加载模型。", endChip: "⏹ 回答结束", card_size: "文件大小", card_filename: "文件中的名称", card_weights: "权重占用内存", gpuCounted: "GPU 显存，实际分配", card_wasm: "引擎内存（wasm，加载后）", card_license: "许可证", card_org: "发布者", card_langs: "语言", card_data: "训练数据", notStated: "文件中未注明", card_backend: "后端", cardCpu: "CPU（wasm，单线程）", cardCpuThreads: "CPU（wasm，{n} 个线程）", cardCpuFailed: "CPU（wasm，单线程：多线程引擎未能启动。技术细节：{m}）", card_load: "加载时间", card_gpuCalls: "每个生成词元的 WebGPU 调用", gpuCallsText: "{dispatches} 次调度，{submits} 次提交，{bind_groups} 个绑定组，{writes} 次写入，{readbacks} 次回读（{readback_bytes} 字节）", gpuCallsNone: "第一次回答后统计",
    honesty: "这是一个小型语言模型：它可能出错，不了解训练数据之后的事，也不是搜索引擎。",
    conversationsList: "已保存的对话", menu: "菜单",
    cache: "正在读取已存储的模型",
    errInterrupted: "{url} 的下载在 {got} MB 后中断。请重试：会从中断处继续。",
    errChecksum: "从 {url} 下载的文件已损坏（SHA-256 不匹配），已丢弃。",
    errQuota: "模型（{need} MB）超出此浏览器的存储空间（剩余 {free} MB）：已加载，但不会保存以供离线使用。",
    errCache: "此浏览器无法存储模型（{m}）：已加载，但不会保存以供离线使用。",
    updateReady: "Ember 有新版本。", reload: "重新加载",
    storage: "本设备上的存储", storedModels: "已存储的模型", noModels: "尚未存储任何模型。",
    deleteModel: "删除已存储的模型", storageUsed: "已使用 {used} MB，本站可用 {quota} MB。", storagePersisted: "浏览器会一直保留这些数据，直到你删除。", storageMayClear: "空间不足时浏览器可能会清除这些数据，届时需要重新下载模型。",
    deleteAllChats: "删除所有对话", confirmDeleteAll: "删除本设备上的所有对话？此操作无法撤销。",
    partial: "下载未完成", verified: "已验证 SHA-256",
    classroom: "课堂", step: "单步", play: "播放", pause: "暂停", delay: "间隔",
    keysHint: "按键：→ 或 . 前进一步，p 播放或暂停。点击候选词元可以亲自选择。",
    nextToken: "下一个词元", computing: "正在计算下一个词元…", sendFirst: "先发送一条消息，然后逐个词元地生成。",
    nextHint: "经过采样流程后，下一个词元将从这些候选中抽取。", nextHintGreedy: "温度为 0：不抽样，直接取概率最高的词元（贪心）。模型自己的概率见采样流程的第一列。", force: "选择",
    pipeline: "采样流程", stage_softmax: "模型（softmax）", stage_temperature: "温度", stage_top_k: "Top-k",
    stage_top_p: "Top-p", stage_min_p: "Min-p → 从中抽取", kept: "保留 {n} 个", off: "关闭",
    tokenDetails: "已生成的词元", tokenHint: "指向或聚焦回答中的词元，查看模型考虑过的其他选择。",
    tokenInfo: "第 {n} 个词元：“{tok}”（id {id}），概率 {p}。", forced: "手动选择", branchHere: "改为",
    branchHint: "点击其他候选词元，从那里继续；之前的回答会保留，可用 ‹ › 切换。",
    legend: "概率：", tokenisation: "词元", yourText: "你的消息", promptSeen: "模型看到的内容（聊天模板）",
    promptTokens: "{n} / {limit} 个词元", draftTokens: "{n} 个词元", aboutModel: "GPT 如何工作",
    exportTraceJson: "导出记录（JSON）", exportTraceCsv: "导出记录（CSV）",
    h_model: "模型", h_layers: "层数", h_width: "宽度", h_heads: "注意力头", h_ctx: "上下文", h_params: "参数量", h_this: "当前模型",
    x_next_title: "下一个词元预测",
    x_next: "GPT 读取已有的文本，为词表中的每个词元给出“接下来出现”的概率。然后选出一个词元（最可能的那个，或按温度、Top-k、Top-p、Min-p 调整后随机抽取），把它接到文本后面，再重复这个过程。它做的就是这些：回答、代码和诗歌都是一个词元一个词元地生成的。",
    x_bert_title: "GPT 与 BERT",
    x_bert: "GPT 从左到右阅读并预测下一个词元：它是为写作而生的。BERT 一次看到整句话并填空（“[MASK] 是蓝色的” → 天空）：它用于理解和分类，而不是写作。",
    x_train_title: "聊天模型是怎样炼成的",
    x_train: "预训练：在海量文本上做下一个词元预测，学会语言和知识。监督微调（SFT）：用优质对话示例教它回答。偏好调优：学习人们更喜欢两个回答中的哪一个。SmolLM2-Instruct 先经过 SFT，再经过 DPO（直接偏好优化）；ChatGPT 使用了奖励模型和 PPO（基于人类反馈的强化学习）。",
    x_limits_title: "它做不到的事",

  },
};

export const LANGS = Object.keys(STRINGS);

export function pickLang(params, saved, navLangs) {
  const asked = params.get("lang");
  if (LANGS.includes(asked)) return asked;
  if (LANGS.includes(saved)) return saved;
  return (navLangs || []).some((l) => l.toLowerCase().startsWith("zh")) ? "zh" : "en";
}

let lang = "en";
export const getLang = () => lang;

/** Sentences one after another, as the language writes them (Chinese without a space). */
export const sentences = (...parts) => parts.filter(Boolean).join(lang === "zh" ? "" : " ");

/** Whether `key` has a translation. */
export const has = (key) => key in STRINGS.en;

export function t(key, vars = {}) {
  const s = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}

export function applyLang(next, root = document) {
  lang = LANGS.includes(next) ? next : "en";
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}
