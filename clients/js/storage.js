// Storage for SyncClient: a string-keyed store of JSON values with atomic batches.
//
// Interface (any object with these methods will do):
//   get(key) -> value | undefined
//   list(prefix) -> [[key, value], ...] in key order
//   batch(ops) -> applies every op or none: {op: "put", key, value} | {op: "del", key}
//                 | {op: "delPrefix", prefix}
//   close()
//
// IndexedDBStorage is the durable one in browsers (and in Node with an IndexedDB shim such as
// fake-indexeddb); MemoryStorage keeps nothing; FileStorage (storage-file.js) is durable in
// Node.

const HIGH = "\uffff";

export class MemoryStorage {
  constructor() {
    this.map = new Map();
  }

  async get(key) {
    return structuredClone(this.map.get(key));
  }

  async list(prefix) {
    return [...this.map.entries()]
      .filter(([key]) => key.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, value]) => [key, structuredClone(value)]);
  }

  async batch(ops) {
    // Checked first, so that a bad op leaves everything as it was.
    for (const op of ops) {
      if (!["put", "del", "delPrefix"].includes(op.op)) throw new Error(`unknown op ${op.op}`);
    }
    for (const op of ops) {
      if (op.op === "put") this.map.set(op.key, structuredClone(op.value));
      else if (op.op === "del") this.map.delete(op.key);
      else for (const key of [...this.map.keys()]) if (key.startsWith(op.prefix)) this.map.delete(key);
    }
  }

  async close() {}
}

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export class IndexedDBStorage {
  // `name`: one database per user and device (e.g. `coursegen-sync-${userId}`).
  static async open(name, indexedDB = globalThis.indexedDB) {
    if (!indexedDB) throw new Error("IndexedDB is not available here; pass another storage");
    const request = indexedDB.open(name, 1);
    request.onupgradeneeded = () => request.result.createObjectStore("kv");
    return new IndexedDBStorage(await promised(request));
  }

  constructor(db) {
    this.db = db;
  }

  #store(mode) {
    const tx = this.db.transaction("kv", mode);
    return [tx, tx.objectStore("kv")];
  }

  async get(key) {
    const [, store] = this.#store("readonly");
    return promised(store.get(key));
  }

  async list(prefix) {
    const [, store] = this.#store("readonly");
    const range = IDBKeyRange.bound(prefix, prefix + HIGH);
    const [keys, values] = await Promise.all([
      promised(store.getAllKeys(range)),
      promised(store.getAll(range)),
    ]);
    return keys.map((key, i) => [key, values[i]]);
  }

  async batch(ops) {
    // One readwrite transaction: IndexedDB commits all of it or, on any error, none.
    const [tx, store] = this.#store("readwrite");
    const done = new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error("transaction aborted"));
    });
    try {
      for (const op of ops) {
        if (op.op === "put") store.put(op.value, op.key);
        else if (op.op === "del") store.delete(op.key);
        else if (op.op === "delPrefix") store.delete(IDBKeyRange.bound(op.prefix, op.prefix + HIGH));
        else throw new Error(`unknown op ${op.op}`);
      }
    } catch (error) {
      tx.abort();
      await done.catch(() => {});
      throw error;
    }
    await done;
  }

  async close() {
    this.db.close();
  }
}
