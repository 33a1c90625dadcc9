// clients/js/sync-client.js against a real server, driven by tests/test_sync_client_js.py.
// Two devices of one user: d1 on IndexedDB (fake-indexeddb), d2 on a JSON file. The network is
// a shim over fetch per device: offline, failing, or losing the response after the server
// answered. Prints one JSON line with what it saw; the Python test checks it and the server.
import "fake-indexeddb/auto";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { pullOnPokes, SyncClient } from "../../clients/js/sync-client.js";
import { IndexedDBStorage } from "../../clients/js/storage.js";
import { FileStorage } from "../../clients/js/storage-file.js";

const config = JSON.parse(process.argv[2]);
const [t0, t1, t2] = config.topics;

function network() {
  const net = { offline: false, fail: 0, lose: 0, sent: [] };
  net.fetch = async (url, init) => {
    if (net.offline || net.fail > 0) {
      if (!net.offline) net.fail--;
      throw new TypeError("fetch failed");
    }
    net.sent.push(new URL(url).pathname);
    const response = await fetch(url, init);
    if (net.lose > 0) {
      net.lose--;
      await response.text();
      throw new TypeError("connection reset"); // the server did it; we never heard
    }
    return response;
  };
  return net;
}

const fast = { attempts: 6, baseMs: 20, capMs: 200 };
const results = [];

async function device(name, storage, net, getToken) {
  return SyncClient.open({
    baseUrl: config.base,
    storage,
    fetch: net.fetch,
    getToken: getToken ?? (async () => config.token),
    retry: fast,
    onResult: (result, mutation) => results.push({ device: name, name: mutation?.name, ...result }),
  });
}

const out = {};
const net1 = network();
const net2 = network();
const d1 = await device("d1", await IndexedDBStorage.open("d1"), net1);
let d2 = await device("d2", await FileStorage.open(config.file), net2);
await d1.pull();
await d2.pull();
out.initialKeys = [...(await d1.view()).keys()].sort();

net1.offline = net2.offline = true;
await d1.mutate("completeTopic", { topicId: t0, score: 70 });
await d1.mutate("createNote", { noteId: config.noteId, topicId: t2, body: "from d1" });
await d1.mutate("bookmarkTopic", { topicId: t1 });
await d2.mutate("completeTopic", { topicId: t2 });
await d2.mutate("completeTopic", { topicId: config.ghost });
await d2.mutate("renameCourse", { courseId: config.courseId, title: "Renamed offline" });
const optimistic = await d2.view();
out.optimistic = {
  ghost: optimistic.get(`progress/${config.ghost}`) ?? null,
  title: optimistic.get(`course/${config.courseId}`)?.title ?? null,
};
// Offline, sync gives up with UNAVAILABLE and keeps everything queued.
out.offlineError = await d1.sync().then(() => null, (e) => e.code);
// d2 restarts (the app is killed and opened again) before the network is back.
await d2.close();
const group2 = d2.group;
let current = "an-expired-token"; // what it had cached; a refresh gets a good one
d2 = await device("d2", await FileStorage.open(config.file), net2, async ({ refresh }) => {
  if (refresh) current = config.token;
  return current;
});
out.afterRestart = { pending: (await d2.pending()).length, sameGroup: d2.group === group2 };

// Back online. d1: the first two requests fail, then the push's response is lost after the
// server applied it; the retry must apply nothing twice.
net1.offline = false;
net1.fail = 2;
net1.lose = 1;
await d1.sync();
net2.offline = false;
await d2.sync(); // its token has expired: one refresh, then on
out.stats = { d1: { ...d1.stats }, d2: { ...d2.stats } };
await d1.pull();

// Five pokes at once cost two pulls, not five.
const before = d1.stats.pulls;
await Promise.all([1, 2, 3, 4, 5].map(() => d1.poked()));
out.pokePulls = d1.stats.pulls - before;

// Drift: a row lost locally is found by the checksums and the replica is rebuilt.
const rows = await d1.storage.list("row/");
const lost = rows.find(([, r]) => r.type === "topic");
await d1.storage.batch([{ op: "del", key: lost[0] }]);
out.driftBefore = (await d1.view()).has(`topic/${lost[1].id}`);
const restarts = d1.stats.restarts;
await d1.pull({ checksums: true });
out.driftRestarts = d1.stats.restarts - restarts;

// Live: d2 follows syncPoke over graphql-ws; a change d1 pushes reaches d2 with no pull of
// its own.
const ws = createClient({
  url: config.base.replace(/^http/, "ws") + "/graphql",
  webSocketImpl: WebSocket,
  connectionParams: () => ({ authorization: `Bearer ${config.token}` }),
});
const connected = new Promise((resolve) => ws.on("connected", resolve));
const stop = pullOnPokes(ws, d2);
await connected;
await new Promise((resolve) => setTimeout(resolve, 300)); // the subscription is registered
const pullsBefore = d2.stats.pulls;
await d1.mutate("unbookmarkTopic", { topicId: t1 });
await d1.sync();
const deadline = Date.now() + 10_000;
while ((await d2.view()).has(`bookmark/${t1}`) && Date.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
out.poked = { gone: !(await d2.view()).has(`bookmark/${t1}`), pulls: d2.stats.pulls - pullsBefore };
stop();
await ws.dispose();

out.results = results;
out.pending = { d1: (await d1.pending()).length, d2: (await d2.pending()).length };
out.views = {
  d1: Object.fromEntries(await d1.view()),
  d2: Object.fromEntries(await d2.view()),
};
await d1.close();
await d2.close();
process.stdout.write(JSON.stringify(out) + "\n");
