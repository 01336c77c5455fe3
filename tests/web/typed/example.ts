// A typed use of the whole tide-gpu API, checked by tsc against the package's declarations
// (tests/web/package.test.mjs installs the packed package beside it and runs tsc --noEmit).
import { load, listModels, models, TideModel } from 'tide-gpu';
import type { GenerateResult, Inspection, LoadProgress, ModelInfo, StoredFile } from 'tide-gpu';
import type { ChatFinishReason, ChatMessage, Tool, ToolCall } from 'tide-gpu';

export async function run(): Promise<string> {
  const served = await listModels();
  const sizes: number[] = served.flatMap((m) => m.files.map((f) => f.bytes));
  const hashes: string[] = served.flatMap((m) => m.files.map((f) => f.sha256));
  const model: TideModel = await load(served[0]?.name ?? 'tide-k4', {
    backend: 'cpu',
    ctxLen: 512,
    memory: 'download',
    onProgress: (p: LoadProgress) => {
      const share: number = p.total ? p.loaded / p.total : 0;
      const left: number | null | undefined = p.etaSeconds;
      console.log(p.phase, p.file, share, p.rate, left);
    },
    onWarning: (w: string) => console.warn(w),
  });
  const info: ModelInfo = model.info;
  const fromStore: boolean = info.load.files.every((f) => f.cached && f.verified);
  const isolated: boolean = info.cross_origin_isolated;
  const threads: number = info.cpu_threads;
  const ac = new AbortController();
  const it = model.generate('Once upon a time', { maxTokens: 8, temperature: 0, signal: ac.signal });
  let text = '';
  for await (const piece of it) text += piece;
  const whole: GenerateResult = await it.done;
  const again: GenerateResult = await model.complete('Once upon a time', { maxTokens: 8, topK: 40, topP: 0.9, seed: 1 });
  const stop: 'eos' | 'max_tokens' | 'context_full' | 'cancelled' = again.stop;
  const inspected: Inspection = await model.inspect('The zebra');
  const nullWeight: number = inspected.weights[0][0][inspected.k];
  const stats = await model.memoryStats();
  const hits: number = stats?.hits ?? 0;
  const reply = await model.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8 });
  const answer: string = reply.choices[0].message.content ?? '';
  const stream = await model.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], stream: true });
  for await (const chunk of stream) text += chunk.choices[0].delta.content ?? '';
  const done = await model.completions.create({ prompt: 'Once', max_tokens: 4, stop: ['\n'], logprobs: 2 });
  const json = await model.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }],
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } } });
  text += json.choices[0].message.content;
  const tool: Tool = { type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } };
  const called = await model.chat.completions.create({ messages: [{ role: 'user', content: 'Weather?' }],
    tools: [tool], tool_choice: { type: 'function', function: { name: 'get_weather' } } });
  const calls: ToolCall[] = called.choices[0].message.tool_calls ?? [];
  const finish: ChatFinishReason = called.choices[0].finish_reason;
  const followUp: ChatMessage[] = [{ role: 'assistant', content: null, tool_calls: calls },
    { role: 'tool', tool_call_id: calls[0]?.id ?? '', content: 'sunny' }];
  const streamed = await model.chat.completions.create({ messages: followUp, tools: [tool], tool_choice: 'required',
    stream: true });
  for await (const c of streamed) text += c.choices[0]?.delta.tool_calls?.[0]?.function?.arguments ?? finish;
  const cached: number = done.usage?.prompt_tokens_details.cached_tokens ?? 0;
  const lp: number = done.choices[0].logprobs?.token_logprobs[0] ?? 0;
  const chunks = await model.completions.create({ prompt: 'Once', stream: true, stream_options: { include_usage: true } });
  for await (const c of chunks) text += c.choices[0]?.text ?? '';
  const shared: number = (await model.apiStats()).shared_steps + info.slots;
  const stored: StoredFile[] = await models.list();
  const removed: number = await models.delete({ model: info.model });
  const cleared: number = await models.clear();
  model.close();
  return [text, whole.text, stop, nullWeight, hits, answer, cached, lp, shared, stored.length, removed, cleared, fromStore,
    isolated, threads, sizes.length, hashes.length].join(' ');
}
