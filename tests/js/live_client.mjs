// Follows one generation job with a real JavaScript client and prints what it receives as
// JSON lines on stdout, for tests/test_live_js.py.
//
//   node live_client.mjs '<json config>'
//
// config: {
//   client: "graphql-ws" | "graphql-sse" | "graphql-sse-single" | "eventsource",
//   base: "http://127.0.0.1:PORT", path: "/graphql" (GraphQL clients),
//   token: "<access token>", jobId: "<id>", after: <int|null>,
//   streamUrl: "/events/jobs/<id>?token=..." (eventsource), query: "<override>",
//   resume: true  // keep variables.after at the last seq, so a reconnect resumes
//   timeoutMs: 20000
// }
// Lines: {"kind":"event","event":{...}} | {"kind":"errors","errors":[...]}
//        | {"kind":"closed","code":N,"reason":"..."} | {"kind":"close-event","data":{...}}
//        | {"kind":"connected"} | {"kind":"error","message":"..."} | {"kind":"done"}
import { createClient as createWsClient } from 'graphql-ws';
import { createClient as createSseClient } from 'graphql-sse';
import WebSocket from 'ws';
import { EventSource } from 'eventsource';

const config = JSON.parse(process.argv[2]);
const emit = (line) => process.stdout.write(JSON.stringify(line) + '\n');
const QUERY = config.query ?? `subscription Progress($jobId: ID!, $after: Int) {
  generationProgress(jobId: $jobId, after: $after) {
    seq type jobId progress stage message courseId at data
  }
}`;
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const payload = { query: QUERY, variables: { jobId: config.jobId, after: config.after ?? null } };

function onResult(result) {
  if (result.errors) emit({ kind: 'errors', errors: result.errors });
  const event = result.data?.generationProgress;
  if (event) {
    emit({ kind: 'event', event });
    // The documented way to resume: the client re-sends this payload when it reconnects.
    if (config.resume) payload.variables.after = event.seq;
  }
}

async function viaGraphqlWs() {
  const url = config.base.replace(/^http/, 'ws') + (config.path ?? '/graphql');
  const client = createWsClient({
    url,
    webSocketImpl: WebSocket,
    lazy: true,
    retryAttempts: config.retryAttempts ?? 5,
    retryWait: () => new Promise((resolve) => setTimeout(resolve, 200)),
    shouldRetry: () => true,
    connectionParams: () => ({ authorization: `Bearer ${config.token}` }),
    on: {
      connected: () => emit({ kind: 'connected' }),
      closed: (event) => emit({ kind: 'closed', code: event.code, reason: event.reason }),
    },
  });
  try {
    await new Promise((resolve, reject) => {
      client.subscribe(payload, {
        next: onResult,
        error: (error) => reject(error),
        complete: () => resolve(),
      });
    });
  } finally {
    await client.dispose();
  }
}

async function viaGraphqlSse(singleConnection) {
  const client = createSseClient({
    url: config.base + (config.path ?? '/graphql'),
    singleConnection,
    headers: () => ({ Authorization: `Bearer ${config.token}` }),
    retryAttempts: config.retryAttempts ?? 5,
    retry: () => new Promise((resolve) => setTimeout(resolve, 200)),
    on: { connected: () => emit({ kind: 'connected' }) },
  });
  try {
    await new Promise((resolve, reject) => {
      client.subscribe(payload, {
        next: onResult,
        error: (error) => reject(error),
        complete: () => resolve(),
      });
    });
  } finally {
    client.dispose();
  }
}

async function viaEventSource() {
  const source = new EventSource(config.base + config.streamUrl);
  try {
    await new Promise((resolve, reject) => {
      source.onopen = () => emit({ kind: 'connected' });
      source.onmessage = (message) => {
        const event = JSON.parse(message.data);
        if (String(event.seq) !== message.lastEventId) {
          reject(new Error(`id ${message.lastEventId} is not seq ${event.seq}`));
        }
        emit({ kind: 'event', event });
        if (TERMINAL.has(event.type)) resolve();
      };
      source.addEventListener('close', (message) => {
        emit({ kind: 'close-event', data: JSON.parse(message.data) });
      });
      source.onerror = (error) => {
        emit({ kind: 'closed', code: error.code ?? null, reason: error.message ?? '' });
        if (source.readyState === EventSource.CLOSED) reject(new Error('EventSource closed'));
      };
    });
  } finally {
    source.close();
  }
}

const run = {
  'graphql-ws': viaGraphqlWs,
  'graphql-sse': () => viaGraphqlSse(false),
  'graphql-sse-single': () => viaGraphqlSse(true),
  eventsource: viaEventSource,
}[config.client];

const timer = setTimeout(() => {
  emit({ kind: 'error', message: 'timed out' });
  process.exit(2);
}, config.timeoutMs ?? 20000);

try {
  await run();
  emit({ kind: 'done' });
  clearTimeout(timer);
  process.exit(0);
} catch (error) {
  const message = error?.message ?? (error?.code ? `closed ${error.code} ${error.reason}` : String(error));
  emit({ kind: 'error', message, code: error?.code ?? null, reason: error?.reason ?? null });
  clearTimeout(timer);
  process.exit(1);
}
