// PostGraphile 5 for bench/side_by_side.py: the Amber preset over coursegen's tables in the
// bench database, configured as for production (no GraphiQL, no watch, no explain).
//
// Authentication: the request carries coursegen's own access token (HS256, same SECRET_KEY,
// issuer and audience); it is verified here, in `grafast.context`, as the PostGraphile 5 JWT
// guide asks ("you own JWT verification"), and the viewer id goes to PostgreSQL as
// `jwt.claims.sub` with the role `coursegen_bench_viewer`, where row-level security
// (postgraphile_schema.sql) decides what the viewer may read. No valid token: no role, and the
// connecting role holds no table rights, so the query fails with a permission error.
//
// Environment: DATABASE_URL (as coursegen_bench_authenticator), SECRET_KEY, JWT_ISSUER,
// JWT_AUDIENCE, PG_POOL_SIZE (default 10, as coursegen's db_pool_max), OUTPUT_DATA_AS_STRING
// ("1": grafserv's documented string-output optimisation).
import jwt from "jsonwebtoken";
import { makePgService } from "postgraphile/adaptors/pg";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

const secret = process.env.SECRET_KEY;
if (!process.env.DATABASE_URL || !secret) {
  throw new Error("DATABASE_URL and SECRET_KEY must be set");
}
const verifyOptions = {
  algorithms: ["HS256"],
  issuer: process.env.JWT_ISSUER ?? "coursegen",
  audience: process.env.JWT_AUDIENCE ?? "coursegen-api",
};

function viewerSettings(authorization) {
  if (typeof authorization !== "string") return {};
  const [scheme, token] = authorization.split(" ");
  if (scheme?.toLowerCase() !== "bearer" || !token) return {};
  // Throws on a bad signature, algorithm, expiry, issuer or audience: the request fails.
  const claims = jwt.verify(token, secret, verifyOptions);
  if (typeof claims !== "object" || claims.typ !== "access" || typeof claims.sub !== "string") {
    throw new Error("not an access token");
  }
  return { role: "coursegen_bench_viewer", "jwt.claims.sub": claims.sub };
}

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: process.env.DATABASE_URL,
      schemas: ["public"],
      poolConfig: { max: Number(process.env.PG_POOL_SIZE ?? 10) },
    }),
  ],
  schema: {
    // Plain lists beside connections (V4's simpleCollections "both"): the dashboard's
    // subjects and topics are lists, as in coursegen's schema.
    defaultBehavior: "+list",
    dontSwallowErrors: true,
  },
  grafast: {
    explain: false,
    context(requestContext) {
      return { pgSettings: viewerSettings(requestContext.node?.req?.headers?.authorization) };
    },
  },
  grafserv: {
    graphiql: false,
    watch: false,
    websockets: false,
    outputDataAsString: process.env.OUTPUT_DATA_AS_STRING === "1",
  },
};

export default preset;
