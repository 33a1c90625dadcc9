// A client of coursegen's own sync protocol (docs/sync.md), for browsers and Node.js: ES
// modules, no build step, no dependencies. It does what the reference client sync/client.py
// does: a durable mutation queue, a local replica of the server's rows, an optimistic view
// (the rows with the queue replayed on top), push and paged pull with rebase, pokes that
// coalesce, checksums that repair a drifted replica; and over the network, retries with full
// jitter that honour Retry-After, and one token refresh on a 401.
//
//   import { SyncClient } from "./sync-client.js";
//   import { IndexedDBStorage } from "./storage.js";
//   const sync = await SyncClient.open({
//     baseUrl: "https://api.example.com",
//     storage: await IndexedDBStorage.open(`coursegen-sync-${userId}`),
//     getToken: async ({ refresh }) => (refresh ? await refreshTokens() : accessToken),
//     onResult: (result, mutation) => { if (result.status === "REJECTED") toast(result.message) },
//   });
//   await sync.mutate("completeTopic", { topicId });   // durable, and in sync.view() at once
//   await sync.sync();                                  // push, then pull to the last page
//   // on a syncPoke event (subscription over graphql-ws or graphql-sse): sync.poked()

const PROTOCOL_VERSION = 1;
const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

export class SyncError extends Error {
  constructor(code, message, { status = 0, field = null } = {}) {
    super(message);
    this.name = "SyncError";
    this.code = code;
    this.status = status;
    this.field = field;
  }
}

function newId() {
  return globalThis.crypto.randomUUID().replaceAll("-", "");
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const queueKey = (id) => `queue/${String(id).padStart(12, "0")}`;
const rowPrefix = (scope) => `row/${scope}/`;
const rowKey = (scope, type, id) => `${rowPrefix(scope)}${type}/${id}`;

export class SyncClient {
  // Options: baseUrl, storage, getToken({refresh}) -> token, fetch, clientGroupId, clientId,
  // clockOffsetMs (tests), retry {attempts, baseMs, capMs}, onResult(result, mutation),
  // random (tests).
  static async open(options) {
    const { storage } = options;
    const group = (await storage.get("meta/group")) ?? options.clientGroupId ?? newId();
    const client = (await storage.get("meta/client")) ?? options.clientId ?? newId();
    await storage.batch([
      { op: "put", key: "meta/group", value: group },
      { op: "put", key: "meta/client", value: client },
    ]);
    return new SyncClient(options, group, client);
  }

  constructor(options, group, client) {
    this.baseUrl = options.baseUrl.replace(/\/$/, "");
    this.storage = options.storage;
    this.getToken = options.getToken;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.clockOffsetMs = options.clockOffsetMs ?? 0;
    this.retry = { attempts: 6, baseMs: 200, capMs: 10_000, ...options.retry };
    this.onResult = options.onResult ?? (() => {});
    this.random = options.random ?? Math.random;
    this.group = group;
    this.client = client;
    this.poking = false;
    this.pokedAgain = false;
    this.stats = { requests: 0, retries: 0, pulls: 0, refreshes: 0, restarts: 0 };
  }

  // --- local state -------------------------------------------------------------------------

  async #tick() {
    const now = Date.now() + this.clockOffsetMs;
    const [wall, counter] = ((await this.storage.get("meta/hlc")) ?? "0-0").split("-").map(Number);
    return now > wall ? [now, 0] : [wall, counter + 1];
  }

  // Queue a mutation durably (one atomic batch); it shows in view() at once. Returns its id.
  async mutate(name, args, { baseVersion = null } = {}) {
    const id = (await this.storage.get("meta/next")) ?? 1;
    const [wall, counter] = await this.#tick();
    const mutation = { id, name, args, hlc: `${wall}-${counter}-${this.client}`, baseVersion };
    await this.storage.batch([
      { op: "put", key: "meta/next", value: id + 1 },
      { op: "put", key: "meta/hlc", value: `${wall}-${counter}` },
      { op: "put", key: queueKey(id), value: mutation },
    ]);
    return id;
  }

  async pending() {
    const rows = await this.storage.list("queue/");
    return rows.map(([, m]) => ({ clientId: this.client, ...m }));
  }

  // The server's rows as last pulled: Map "type/id" -> data.
  async serverRows() {
    const rows = await this.storage.list("row/");
    return new Map(rows.map(([, r]) => [`${r.type}/${r.id}`, r.data]));
  }

  async rowVersions(scope) {
    const rows = await this.storage.list(rowPrefix(scope));
    return rows.map(([, r]) => [r.type, r.id, r.version]);
  }

  // Server state rebased with the pending mutations (optimistic). A rejected or superseded
  // mutation disappears from it once a pull confirms it: that is the rollback.
  async view() {
    const state = await this.serverRows();
    for (const m of await this.pending()) applyLocally(state, m.name, m.args);
    return state;
  }

  // --- the network -------------------------------------------------------------------------

  // POST with retries: a network failure, 429/502/503/504 (Retry-After honoured) are retried
  // with full jitter; a 401 refreshes the token once; other errors throw SyncError at once.
  async request(path, body) {
    let refreshed = false;
    for (let attempt = 1; ; attempt++) {
      this.stats.requests++;
      let response;
      try {
        const token = await this.getToken({ refresh: false });
        response = await this.fetch(`${this.baseUrl}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify(body),
        });
      } catch (error) {
        if (error instanceof SyncError) throw error;
        await this.#backoff(attempt, null, error);
        continue;
      }
      if (response.status === 401 && !refreshed) {
        refreshed = true;
        this.stats.refreshes++;
        await this.getToken({ refresh: true });
        continue;
      }
      const text = await response.text();
      let data = null;
      try {
        data = text ? JSON.parse(text) : null;
      } catch {
        data = null;
      }
      if (response.ok && data) return data;
      if (RETRYABLE_STATUS.has(response.status)) {
        await this.#backoff(attempt, response.headers.get("retry-after"), response.status);
        continue;
      }
      const error = data?.error ?? {};
      throw new SyncError(error.code ?? "HTTP_ERROR", error.message ?? `HTTP ${response.status}`, {
        status: response.status,
        field: error.field ?? null,
      });
    }
  }

  async #backoff(attempt, retryAfter, cause) {
    if (attempt >= this.retry.attempts) {
      throw new SyncError("UNAVAILABLE", `The server could not be reached (${cause}).`);
    }
    this.stats.retries++;
    const ceiling = Math.min(this.retry.capMs, this.retry.baseMs * 2 ** (attempt - 1));
    let wait = this.random() * ceiling; // full jitter
    const seconds = Number(retryAfter);
    if (retryAfter !== null && Number.isFinite(seconds)) wait = Math.max(wait, seconds * 1000);
    await sleep(wait);
  }

  // Sends the pending mutations (or the first `batch`); each result goes to onResult. Results
  // are answers, not confirmations: the queue shrinks only on a pull's last page.
  async push({ batch } = {}) {
    let mutations = await this.pending();
    if (batch) mutations = mutations.slice(0, batch);
    if (!mutations.length) return null;
    const response = await this.request("/sync/push", {
      protocolVersion: PROTOCOL_VERSION,
      clientGroupId: this.group,
      mutations,
    });
    const byId = new Map(mutations.map((m) => [m.id, m]));
    for (const result of response.results ?? []) {
      if (result.clientId === this.client) this.onResult(result, byId.get(result.id));
    }
    return response;
  }

  async pullPage({ limit, checksums = false } = {}) {
    const body = {
      protocolVersion: PROTOCOL_VERSION,
      clientGroupId: this.group,
      cookie: (await this.storage.get("meta/cookie")) ?? null,
    };
    if (limit) body.limit = limit;
    if (checksums) body.checksums = true;
    this.stats.pulls++;
    let page;
    try {
      page = await this.request("/sync/pull", body);
    } catch (error) {
      if (!(error instanceof SyncError && error.field === "cookie")) throw error;
      // Not a cookie this server issued (or it rotated its key): start over, keep the queue.
      await this.#startOver();
      return this.pullPage({ limit, checksums });
    }
    await this.applyPage(page);
    return page;
  }

  // One page and its cookie in one atomic batch; on the last page, the queue loses what
  // lastMutationIds confirms (exact only there).
  async applyPage(page) {
    const ops = [];
    for (const scope of page.resetScopes ?? []) ops.push({ op: "delPrefix", prefix: rowPrefix(scope) });
    for (const p of page.patches) {
      if (p.op === "DROP_SCOPE") ops.push({ op: "delPrefix", prefix: rowPrefix(p.scope) });
      else if (p.op === "DEL") ops.push({ op: "del", key: rowKey(p.scope, p.type, p.id) });
      else {
        const value = { scope: p.scope, type: p.type, id: p.id, version: p.version, data: p.data };
        ops.push({ op: "put", key: rowKey(p.scope, p.type, p.id), value });
      }
    }
    ops.push({ op: "put", key: "meta/cookie", value: page.cookie });
    if (!page.hasMore) {
      const confirmed = Number(page.lastMutationIds?.[this.client] ?? 0);
      for (const m of await this.pending()) {
        if (m.id <= confirmed) ops.push({ op: "del", key: queueKey(m.id) });
      }
    }
    await this.storage.batch(ops);
  }

  async #startOver() {
    this.stats.restarts++;
    await this.storage.batch([
      { op: "delPrefix", prefix: "row/" },
      { op: "del", key: "meta/cookie" },
    ]);
  }

  // Pulls until hasMore is false; returns the number of pages. With checksums, a replica that
  // disagrees with the server's last page starts over (rows and cookie dropped, queue kept).
  async pull({ limit, checksums = false, maxPages = 10_000 } = {}) {
    for (let pages = 1; pages <= maxPages; pages++) {
      const page = await this.pullPage({ limit, checksums });
      if (page.hasMore) continue;
      if (checksums && (await this.drifted(page.checksums ?? {})).length) {
        await this.#startOver();
        return pages + (await this.pull({ limit, maxPages }));
      }
      return pages;
    }
    throw new Error("pull did not end");
  }

  async drifted(checksums) {
    const out = [];
    for (const [scope, expected] of Object.entries(checksums)) {
      if ((await checksum(await this.rowVersions(scope))) !== expected) out.push(scope);
    }
    return out.sort();
  }

  // A syncPoke (or resync) arrived: pull. Pokes arriving meanwhile cost one more pull in all.
  async poked() {
    this.pokedAgain = true;
    if (this.poking) return;
    this.poking = true;
    try {
      while (this.pokedAgain) {
        this.pokedAgain = false;
        await this.pull();
      }
    } finally {
      this.poking = false;
    }
  }

  // Push and pull until the queue is empty, or stops shrinking (RETRY_LATER, say).
  async sync({ batch, limit } = {}) {
    for (;;) {
      const before = (await this.pending()).length;
      if (!before) break;
      const response = await this.push({ batch });
      await this.pull({ limit });
      const statuses = new Set((response?.results ?? []).map((r) => r.status));
      const after = (await this.pending()).length;
      if (statuses.has("RETRY_LATER") || (after >= before && !batch)) break;
    }
    await this.pull({ limit });
  }

  async close() {
    await this.storage.close();
  }
}

export const POKE_SUBSCRIPTION = "subscription { syncPoke { scopes { scope version } resync } }";

// Pull on every syncPoke: `client` is a graphql-ws or graphql-sse client (both have
// `subscribe(payload, sink)`), created with the user's token. Returns the unsubscribe function.
// Pokes carry no data and are at-most-once: pull on (re)connect as well (graphql-ws's
// `on("connected", () => sync.poked())`).
export function pullOnPokes(client, sync, onError = () => {}) {
  return client.subscribe(
    { query: POKE_SUBSCRIPTION },
    {
      next: () => sync.poked().catch(onError),
      error: onError,
      complete: () => {},
    },
  );
}

// A scope's checksum as the server computes it: sha256 over its rows' sorted
// `type:id:version` lines, the first 16 hex digits.
export async function checksum(rows) {
  const lines = rows.map(([t, i, v]) => `${t}:${i}:${v}`).sort();
  const digest = await globalThis.crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(lines.join("\n")),
  );
  return [...new Uint8Array(digest)]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("")
    .slice(0, 16);
}

// The optimistic effect of a mutation on a Map "type/id" -> data (the server's rules decide
// the final state). The same as sync/client.py's _apply_locally.
export function applyLocally(state, name, args) {
  const edit = (key, fields) => {
    const row = state.get(key);
    if (row) state.set(key, { ...row, ...fields });
  };
  switch (name) {
    case "completeTopic":
    case "uncompleteTopic": {
      const done = name === "completeTopic";
      state.set(`progress/${args.topicId}`, {
        id: args.topicId,
        topicId: args.topicId,
        completed: done,
        score: done ? (args.score ?? null) : null,
      });
      break;
    }
    case "bookmarkTopic":
      state.set(`bookmark/${args.topicId}`, { id: args.topicId, topicId: args.topicId });
      break;
    case "unbookmarkTopic":
      state.delete(`bookmark/${args.topicId}`);
      break;
    case "renameCourse":
    case "updateCourseDetails": {
      const { courseId, ...fields } = args;
      edit(`course/${courseId}`, fields);
      break;
    }
    case "renameTopic":
      edit(`topic/${args.topicId}`, { title: args.title });
      break;
    case "moveTopic":
      edit(`topic/${args.topicId}`, { subjectId: args.subjectId });
      break;
    case "createNote":
      state.set(`note/${args.noteId}`, {
        id: args.noteId,
        topicId: args.topicId,
        body: args.body,
        version: 1,
      });
      break;
    case "saveNote": {
      // The server bumps the version when it applies the edit: so does the view, so that the
      // next edit queued on this device is based on this one (not a conflict with it).
      const row = state.get(`note/${args.noteId}`);
      if (row) state.set(`note/${args.noteId}`, { ...row, body: args.body, version: (row.version ?? 1) + 1 });
      break;
    }
    case "deleteNote":
      state.delete(`note/${args.noteId}`);
      break;
    case "createCourse":
      state.set(`course/${args.courseId}`, { id: args.courseId, ...args });
      break;
    case "deleteCourse":
      state.delete(`course/${args.courseId}`);
      break;
    default:
      break; // unknown here: the server decides
  }
}
