// A durable storage for SyncClient in Node.js: the whole store in one JSON file, replaced
// atomically (written beside it, then renamed) on every batch. Fine for a device's queue and
// replica (thousands of rows); a large server-side replica wants a real database.
import { readFile, rename, writeFile } from "node:fs/promises";

import { MemoryStorage } from "./storage.js";

export class FileStorage extends MemoryStorage {
  static async open(path) {
    const storage = new FileStorage(path);
    try {
      storage.map = new Map(Object.entries(JSON.parse(await readFile(path, "utf8"))));
    } catch (error) {
      if (error.code !== "ENOENT") throw error;
    }
    return storage;
  }

  constructor(path) {
    super();
    this.path = path;
  }

  async batch(ops) {
    const before = new Map(this.map);
    await super.batch(ops);
    try {
      const temp = `${this.path}.${process.pid}.tmp`;
      await writeFile(temp, JSON.stringify(Object.fromEntries(this.map)));
      await rename(temp, this.path);
    } catch (error) {
      this.map = before; // not on disk: not done
      throw error;
    }
  }
}
