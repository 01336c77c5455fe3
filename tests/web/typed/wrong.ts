// Uses of the API that its declarations must refuse (tests/web/package.test.mjs expects tsc to
// fail on each line marked with the error code it must give).
import { load, models } from 'tide-gpu';

export async function wrong(): Promise<void> {
  await load(42); // TS2345: a model is a string
  const m = await load('tide-k4', { backend: 'cuda' }); // TS2322: no such backend
  const n: string = m.info.layers; // TS2322: layers is a number
  await m.complete('Hi', { maxTokens: '8' }); // TS2322: maxTokens is a number
  await models.delete(7); // TS2345: a name or {model, url}
  m.info.load.files[0].resumedFrom; // TS2551: the field is resumed_from
  await m.completions.create({ prompt: 'x', logprobs: true }); // TS2769: completions' logprobs is a number
  await m.chat.completions.create({ messages: [{ role: 'wizard', content: 'x' }] }); // TS2769: no such role
  await m.chat.completions.create({ messages: [], tools: [], tool_choice: 'always' }); // TS2769: no such tool choice
}
