// The learner's data on this device: the sync client (clients/js) with its replica and queue in
// IndexedDB, one database per user. Changes (complete, bookmark, notes) are queued durably and
// shown at once; they are pushed whenever the network allows: now, on the browser's `online`
// event, after a failure (full jitter), and on every poke from another device (the `syncPoke`
// subscription over graphql-ws), which also pulls what the other device changed.

import * as api from "./api.js";
import { createClient } from "./graphql-ws.js";
import { IndexedDBStorage } from "./storage.js";
import { POKE_SUBSCRIPTION, SyncClient } from "./sync-client.js";

const listeners = new Set();
const rejected = []; // REJECTED results waiting for the pull that rolls them back
let current = null; // { userId, sync, pokes }
let opening = null;
let running = null; // the sync in flight
let again = false; // something changed while it ran: run once more
let retryTimer = null;
let failures = 0;

/** What the page shows about syncing. */
export const status = { online: navigator.onLine, syncing: false, pending: 0, error: null };

/** `listener({ kind: "changed" | "status", rejected })` after every sync and change. */
export function onChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function emit(event) {
  for (const listener of listeners) listener(event);
}

/** The user's sync client, opened once per user and page. */
export function open(user) {
  if (current && current.userId === user.id) return Promise.resolve(current.sync);
  if (!opening) {
    opening = (async () => {
      await close();
      const storage = await IndexedDBStorage.open(`coursegen-sync-${user.id}`);
      const sync = await SyncClient.open({
        baseUrl: "",
        storage,
        getToken: async ({ refresh }) => {
          if (refresh) await api.refresh();
          return api.accessToken();
        },
        onResult: (result, mutation) => {
          if (result.status === "REJECTED") rejected.push({ result, mutation });
        },
        retry: { attempts: 3 }, // then this module's own backoff takes over
      });
      current = { userId: user.id, sync, pokes: listenForPokes() };
      await countPending();
      syncSoon();
      return sync;
    })().finally(() => {
      opening = null;
    });
  }
  return opening;
}

export async function close() {
  clearTimeout(retryTimer);
  if (!current) return;
  const { sync, pokes } = current;
  current = null;
  pokes.dispose();
  await running?.catch(() => {});
  await sync.close();
}

/** Rows as the server last sent them, with the queued changes applied (Map "type/id" -> row). */
export async function view() {
  return current ? current.sync.view() : new Map();
}

/** Queue a change (durably, at once in `view()`), then sync when the network allows. */
export async function mutate(name, args, options) {
  const id = await current.sync.mutate(name, args, options);
  await countPending();
  emit({ kind: "changed", rejected: [] });
  syncSoon();
  return id;
}

async function countPending() {
  status.pending = current ? (await current.sync.pending()).length : 0;
}

/** Push the queue and pull; coalesces calls made while one runs. */
export function syncSoon() {
  if (!current) return Promise.resolve();
  if (running) {
    again = true;
    return running;
  }
  clearTimeout(retryTimer);
  status.online = navigator.onLine;
  if (!status.online) {
    emit({ kind: "status", rejected: [] });
    return Promise.resolve(); // the `online` event brings us back
  }
  const { sync } = current;
  status.syncing = true;
  emit({ kind: "status", rejected: [] });
  running = (async () => {
    try {
      do {
        again = false;
        await sync.sync();
      } while (again);
      failures = 0;
      status.error = null;
    } catch (error) {
      failures += 1;
      status.error = error.message;
      if (error.code !== "UNAUTHENTICATED") {
        const ceiling = Math.min(30_000, 1_000 * 2 ** Math.min(failures, 5));
        retryTimer = setTimeout(syncSoon, Math.random() * ceiling); // full jitter
      }
    } finally {
      running = null;
      status.syncing = false;
      if (current && current.sync === sync) await countPending();
      emit({ kind: "changed", rejected: rejected.splice(0) });
    }
  })();
  return running;
}

// Pokes carry no data and are at-most-once: sync on every (re)connect as well as on each poke.
function listenForPokes() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const client = createClient({
    url: `${scheme}://${location.host}/graphql`,
    lazy: false,
    retryAttempts: Number.POSITIVE_INFINITY,
    shouldRetry: () => true,
    retryWait: (retries) =>
      new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(30_000, 1_000 * 2 ** retries))),
    connectionParams: async () => ({ authorization: `Bearer ${await api.accessToken()}` }),
    onNonLazyError: () => {},
    on: { connected: () => syncSoon() },
  });
  const unsubscribe = client.subscribe(
    { query: POKE_SUBSCRIPTION },
    { next: () => syncSoon(), error: () => {}, complete: () => {} },
  );
  return {
    dispose() {
      unsubscribe();
      client.dispose();
    },
  };
}

window.addEventListener("online", () => syncSoon());
window.addEventListener("offline", () => {
  status.online = false;
  emit({ kind: "status", rejected: [] });
});
