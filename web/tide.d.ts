// TypeScript declarations of tide.js, the browser API of tide-gpu (web/README.md documents it).
// They describe what the worker and the wasm module send back; tests/web/typed/ checks a typed
// example against them with tsc.

/** A file of a model that `tide serve` offers. */
export interface ServedFile {
  url: string;
  bytes: number;
  /** Hex sha256 of the file: every download is checked against it. */
  sha256: string;
}

/** A model that `tide serve` offers (`/models.json`). */
export interface ServedModel {
  name: string;
  files: ServedFile[];
  /** "stream": the memory file is read row by row with Range requests unless told otherwise. */
  memory?: 'stream';
}

/** The models a `tide serve` offers. */
export function listModels(base?: string): Promise<ServedModel[]>;

/** "check": sizing the model against the WebGPU adapter from its files' headers. */
export type LoadPhase = 'check' | 'download' | 'cache' | 'open' | 'ready';

export interface LoadProgress {
  phase: LoadPhase;
  /** Bytes over all the model's files. */
  loaded: number;
  total: number;
  /** The file being read, with its own bytes (download and cache phases). */
  file?: string;
  fileLoaded?: number;
  fileTotal?: number;
  /** Bytes per second over the last 3 seconds. */
  rate?: number;
  /** Seconds left at that rate, when known. */
  etaSeconds?: number | null;
}

export interface LoadOptions {
  onProgress?: (p: LoadProgress) => void;
  /** What did not stop the load: no room to store a file, a corrupt stored copy fetched again. */
  onWarning?: (message: string) => void;
  /** "auto" (default): a hardware WebGPU adapter, else the CPU kernels. */
  backend?: 'auto' | 'webgpu' | 'gpu' | 'cpu' | 'reference';
  /** Context length in tokens (default: the model's, at most 2048). */
  ctxLen?: number;
  /** How a memory file is read: whole ("download") or row by row ("stream"). */
  memory?: 'download' | 'stream';
  /** The memory row cache in MB (default: 10% of the tables, at most 256). */
  memoryCacheMb?: number;
  /** Rows of a step closer than this many KB share one Range request (default: measured). */
  memoryGapKb?: number;
  /**
   * One engine for every tab of this origin that loads the same model with the same options:
   * the first tab holds it, the others call it (one download, one GPU copy).
   */
  share?: boolean;
  /**
   * Requests `chat.completions.create` and `completions.create` decode together on WebGPU
   * (continuous batching), each in its own K/V cache (default: 4 with `share`, else 1).
   */
  slots?: number;
  /**
   * On WebGPU, open the device and compile the model's kernels (from its files' headers)
   * while the weights download: "auto" (the default) when a weights file is not in the
   * browser's store, true always, false never (they compile after the load, at first use).
   */
  warm?: boolean | 'auto';
}

/** One model file as `load` read it. */
export interface LoadedFile {
  name: string;
  bytes: number;
  /** Read from the browser's storage, downloading nothing. */
  cached: boolean;
  /** Bytes fetched over the network for it in this load. */
  downloaded: number;
  /** Where a cut download resumed (0: from the start). */
  resumed_from: number;
  sha256: string;
  /** Whether models.json's sha256 was there to check it against. */
  verified: boolean;
  /** Whether a copy is kept in the browser's storage. */
  stored: boolean;
}

export interface LoadInfo {
  seconds: number;
  fetch_seconds: number;
  bytes: number;
  /** 0 when every file came from the browser's storage. */
  downloaded_bytes: number;
  files: LoadedFile[];
  warnings: string[];
  /** The wasm heap's size after the load (its peak: it only grows). */
  wasm_heap_bytes: number;
  /** What the model takes on the WebGPU adapter, sized from its files' headers before the
   * download; null on the CPU kernels or when the check could not reach the server. */
  gpu_fit: GpuFit | null;
  /** The kernels created while the weights downloaded: how many, how long creating them took
   * in the worker, and how long the load then waited for that (the browser may compile them
   * later in its GPU process, which the first steps then wait for). null when it did not run. */
  warm: { pipelines: number; seconds: number; wait_seconds: number } | null;
}

export interface GpuFit {
  /** The weights as the GPU holds them. */
  weight_bytes: number;
  /** The K/V cache of every layer and slot. */
  kv_bytes: number;
  /** The largest single binding (a fused layer matrix, a piece of the embedding, a layer's K/V). */
  largest_binding: number;
  ctx_len: number;
  /** Bytes read by Range to size the model (headers, and the few weights a loader reads). */
  header_bytes: number;
  seconds: number;
}

export interface GpuInfo {
  name: string;
  f16: boolean;
  subgroups: boolean;
  weights_in: 'textures' | 'buffers';
  max_storage_buffer_binding_size: number;
  max_buffer_size: number;
  max_storage_buffers_per_shader_stage: number;
}

export interface MemoryLink {
  round_trip_s: number;
  bytes_per_s: number;
  gap_bytes: number;
}

export interface ModelInfo {
  model: string;
  backend: 'webgpu' | 'cpu';
  adapter: string;
  gpu: GpuInfo | null;
  /** Why the CPU runs the model, when it does; otherwise null. */
  note: string | null;
  ctx_note: string | null;
  /** Memory blocks (0: a model without TIDE memory). */
  k: number;
  layers: number;
  vocab: number;
  ctx_len: number;
  /** K/V cache slots: API requests decoded together (1 on the CPU kernels). */
  slots: number;
  chat_template: boolean;
  token_counts: boolean;
  /** The memory file's URL when its rows are streamed. */
  memory_streamed: string | null;
  memory_file_bytes?: number;
  memory_cache_tokens: number | null;
  memory_link: MemoryLink | null;
  cross_origin_isolated: boolean;
  cpu_threads: number;
  load: LoadInfo;
  /** With `share`: whether this tab holds the model (leader) or calls another's (follower). */
  shared?: { role: 'leader' | 'follower' };
}

export interface MemoryStats {
  rows_requested: number;
  hits: number;
  misses: number;
  bytes_fetched: number;
  resident_bytes: number;
  cache_tokens: number;
  streamed: boolean;
}

export interface GenerateOptions {
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  repeatPenalty?: number;
  seed?: number;
  signal?: AbortSignal;
  /** Called with the memory counters after each piece of a memory model. */
  onMemory?: (stats: MemoryStats) => void;
}

/** What `tide generate --json` prints. */
export interface GenerateResult {
  prompt_tokens: number[];
  tokens: number[];
  text: string;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  time_to_first_token_s: number;
  stop: 'eos' | 'max_tokens' | 'context_full' | 'cancelled';
  adapter: string;
  sampler: Record<string, unknown>;
  memory: MemoryStats | null;
}

/** Text pieces as they are generated; `done` (and, after the loop, `result`) the whole. */
export interface GenerateIterator extends AsyncIterableIterator<string> {
  done: Promise<GenerateResult>;
  result: GenerateResult | null;
}

/** What `tide inspect --json` prints. */
export interface Inspection {
  model: string;
  tokens: number[];
  pieces: string[];
  k: number;
  layers: number;
  /** weights[token][layer][slot]; slot k is NULL. */
  weights: number[][][];
  token_counts?: number[];
  /** 0 = rarest, over the whole vocabulary. */
  token_deciles?: number[];
}

export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: string | { type: 'text'; text: string }[] | null;
  /** An assistant's calls, as a reply gave them. */
  tool_calls?: ToolCall[];
  /** A tool's reply: the id of the call it answers (required for role 'tool'). */
  tool_call_id?: string;
  name?: string;
}

/** A function the model may call; its arguments are valid against `parameters`. */
export interface Tool {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

/** "none": shown, never called; "auto": may call; "required" or a named function: forced. */
export type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };

export interface ToolCall {
  id: string;
  type: 'function';
  /** `arguments`: JSON text. */
  function: { name: string; arguments: string };
}

/** A streamed piece of a call: index, id, type and name first, then its arguments. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

/** What OpenAI's API takes beside the prompt; the reply is the one `tide serve` gives. */
export interface RequestOptions {
  /** Default: this model. Another name is refused (404). */
  model?: string;
  /** Default: to the end of the context (chat), 16 (completions). */
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  /** Up to 4: the reply ends before the first (finish_reason "stop"). */
  stop?: string | string[];
  stream_options?: { include_usage?: boolean };
  /** JSON output: any object, or one valid against a schema (a key the engine lacks: 400). */
  response_format?: { type: 'text' } | { type: 'json_object' }
    | { type: 'json_schema'; json_schema: { name?: string; schema: Record<string, unknown>; strict?: boolean } };
  /** Stops the request (its slot is freed). */
  signal?: AbortSignal;
}

export interface ChatRequest extends RequestOptions {
  messages: ChatMessage[];
  max_completion_tokens?: number;
  /** Log-probabilities of the chosen tokens, and of `top_logprobs` (0-20) alternatives. */
  logprobs?: boolean;
  top_logprobs?: number;
  /** Needs a model whose chat template shows tools (Llama 3.x, Qwen2.5): 400 otherwise. */
  tools?: Tool[];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean;
}

export interface CompletionRequest extends RequestOptions {
  prompt: string | [string];
  /** Log-probabilities of the chosen tokens and of this many (0-5) alternatives. */
  logprobs?: number;
}

export type FinishReason = 'stop' | 'length';
/** 'tool_calls': the reply ended after calling tools. */
export type ChatFinishReason = FinishReason | 'tool_calls';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens a K/V cache slot held already (the prefix cache). */
  prompt_tokens_details: { cached_tokens: number };
}

export interface TopLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface ChatLogprobs {
  content: (TopLogprob & { top_logprobs: TopLogprob[] })[];
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: number; message: { role: 'assistant'; content: string | null; tool_calls?: ToolCall[] };
    logprobs: ChatLogprobs | null; finish_reason: ChatFinishReason }[];
  usage: Usage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: { index: number; delta: { role?: 'assistant'; content?: string; tool_calls?: ToolCallDelta[] };
    logprobs: ChatLogprobs | null; finish_reason: ChatFinishReason | null }[];
  /** With stream_options.include_usage: null but in the last chunk. */
  usage?: Usage | null;
}

export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: { index: number; text: string; logprobs: CompletionLogprobs | null; finish_reason: FinishReason | null }[];
  usage?: Usage | null;
}

export interface ChatCompletions {
  create(req: ChatRequest & { stream?: false }): Promise<ChatCompletion>;
  create(req: ChatRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
}

export interface Completions {
  create(req: CompletionRequest & { stream?: false }): Promise<Completion>;
  create(req: CompletionRequest & { stream: true }): Promise<AsyncIterable<Completion>>;
}

/** A refused or failed API request: the status and error object `tide serve` would send. */
export interface APIError extends Error {
  status?: number;
  code?: string | null;
  error?: { message: string; type: string; param: null; code: string | null };
}

/** The serving core's counters for a model's API requests. */
export interface ApiStats {
  requests_completed: number;
  steps: number;
  /** Decode steps that several requests shared (continuous batching). */
  shared_steps: number;
  prefix_hits: number;
  prompt_tokens: number;
  cached_tokens: number;
  generated_tokens: number;
  slots: number;
}

/** A model loaded in its worker. */
export class TideModel {
  private constructor();
  readonly info: ModelInfo;
  readonly chat: { completions: ChatCompletions };
  readonly completions: Completions;
  apiStats(): Promise<ApiStats>;
  generate(prompt: string, options?: GenerateOptions): GenerateIterator;
  complete(prompt: string, options?: GenerateOptions): Promise<GenerateResult>;
  /** null for a model without memory. */
  memoryStats(): Promise<MemoryStats | null>;
  inspect(text: string): Promise<Inspection>;
  /** Testing aid: destroy the GPU device as a lost GPU would. */
  loseDevice(): Promise<boolean>;
  /** Stop the worker and free the model. */
  close(): void;
}

/**
 * Load a model: a name listed by `tide serve`, a .gguf URL (any part of a split GGUF) or a
 * model folder URL.
 */
export function load(model: string, options?: LoadOptions): Promise<TideModel>;

/** A model file kept in the browser's storage. */
export interface StoredFile {
  key: string;
  model: string;
  file: string;
  url: string;
  bytes: number;
  stored_bytes: number;
  /** false: a cut download, resumed by the next load. */
  complete: boolean;
  sha256: string | null;
  etag: string;
  /** Milliseconds since the epoch. */
  updated: number;
}

/** The model files kept in this site's browser storage (OPFS). */
export interface ModelManager {
  list(): Promise<StoredFile[]>;
  /**
   * Delete a model's files (by name), or one file (by URL); resolves to how many were removed.
   * A loaded model holds its files open: they stay until it is closed.
   */
  delete(what: string | { model?: string; url?: string }): Promise<number>;
  /** Delete every stored file; resolves to how many records there were. */
  clear(): Promise<number>;
}

export const models: ModelManager;
