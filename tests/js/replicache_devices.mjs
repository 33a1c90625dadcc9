// Devices running the unmodified npm `replicache` client against /replicache/push and
// /replicache/pull, driven by tests/test_replicache_js.py: one JSON command per stdin line,
// one JSON answer per stdout line. Each device is its own Replicache (its own IndexedDB, on
// fake-indexeddb, so its own client group). "Offline" is the network gone: that device's
// requests fail as fetch fails when there is no network; nothing of Replicache is changed.
import "fake-indexeddb/auto";
import { createInterface } from "node:readline";
import { Replicache } from "replicache";

const base = process.argv[2];
const devices = new Map(); // name -> { rep, offline, token }
const realFetch = globalThis.fetch;

globalThis.fetch = async (input, init) => {
  const url = new URL(typeof input === "string" ? input : input.url);
  const device = devices.get(url.searchParams.get("device"));
  if (device?.offline) throw new TypeError("fetch failed (offline)");
  return realFetch(input, init);
};

// Optimistic versions of the server's mutators (sync/mutators.py): what the device shows at
// once; the server's answer replaces it on the next pull.
const mutators = {
  async completeTopic(tx, { topicId, score }) {
    const old = (await tx.get(`progress/${topicId}`)) ?? { topicId };
    await tx.set(`progress/${topicId}`, { ...old, completed: true, score: score ?? null });
  },
  async uncompleteTopic(tx, { topicId }) {
    const old = (await tx.get(`progress/${topicId}`)) ?? { topicId };
    await tx.set(`progress/${topicId}`, { ...old, completed: false });
  },
  async bookmarkTopic(tx, { topicId }) {
    await tx.set(`bookmark/${topicId}`, { topicId });
  },
  async unbookmarkTopic(tx, { topicId }) {
    await tx.del(`bookmark/${topicId}`);
  },
  async createNote(tx, { noteId, topicId, body }) {
    await tx.set(`note/${noteId}`, { id: noteId, topicId, body, version: 0 });
  },
  async saveNote(tx, { noteId, body }) {
    const old = await tx.get(`note/${noteId}`);
    if (old) await tx.set(`note/${noteId}`, { ...old, body });
  },
  async renameCourse(tx, { courseId, title }) {
    const old = await tx.get(`course/${courseId}`);
    if (old) await tx.set(`course/${courseId}`, { ...old, title });
  },
};

function open({ device, token, offline = false }) {
  // Offline from the start, when asked: a Replicache pushes and pulls as soon as it opens.
  devices.set(device, { offline });
  const q = `?device=${encodeURIComponent(device)}`;
  const rep = new Replicache({
    name: device,
    pushURL: `${base}/replicache/push${q}`,
    pullURL: `${base}/replicache/pull${q}`,
    auth: `Bearer ${token}`,
    mutators,
    pullInterval: null, // the test says when to pull (a poke would, in an app)
    pushDelay: 0,
    logLevel: "error",
  });
  devices.get(device).rep = rep;
  return {};
}

async function pending(rep) {
  return (await rep.experimentalPendingMutations()).length;
}

// Push and pull until nothing is pending (or the deadline): what "back online" ends in.
async function sync(rep, deadline = 15000) {
  const end = Date.now() + deadline;
  for (;;) {
    await rep.push({ now: true }).catch(() => {});
    await rep.pull({ now: true }).catch(() => {});
    // pull() starts the pull; wait for what it brings to be applied.
    await new Promise((resolve) => setTimeout(resolve, 100));
    if ((await pending(rep)) === 0) return;
    if (Date.now() > end) throw new Error(`still ${await pending(rep)} pending`);
  }
}

async function dump(rep) {
  return rep.query(async (tx) => Object.fromEntries(await tx.scan().entries().toArray()));
}

const commands = {
  open,
  async mutate({ device, name, args }) {
    const { rep } = devices.get(device);
    await rep.mutate[name](args);
    return { pending: await pending(rep) };
  },
  async offline({ device }) {
    devices.get(device).offline = true;
    return {};
  },
  async online({ device }) {
    devices.get(device).offline = false;
    return {};
  },
  async sync({ device }) {
    const { rep } = devices.get(device);
    await sync(rep);
    return { clientID: rep.clientID, clientGroupID: await rep.clientGroupID };
  },
  async dump({ device }) {
    const { rep } = devices.get(device);
    return { kv: await dump(rep), pending: await pending(rep) };
  },
  async close({ device }) {
    await devices.get(device).rep.close();
    devices.delete(device);
    return {};
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const command = JSON.parse(line);
  try {
    const answer = await commands[command.cmd](command);
    process.stdout.write(JSON.stringify({ ok: true, ...answer }) + "\n");
  } catch (error) {
    process.stdout.write(JSON.stringify({ ok: false, error: String(error?.stack ?? error) }) + "\n");
  }
}
for (const { rep } of devices.values()) await rep.close();
