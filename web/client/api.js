// The GraphQL API as the page uses it: a session (access + refresh token) kept in memory and in
// localStorage, the access token's expiry checked before each request and renewed through the
// rotating refresh token, one refresh in flight however many requests are waiting for it.
// Queries are deduplicated (the same query and variables in flight share one request) and
// retried with full jitter when the network or the server fails for a moment.

const STORAGE_KEY = "coursegen.session";
const EARLY_SECONDS = 30; // renew this long before the access token expires
const RETRY = { attempts: 4, baseMs: 300, capMs: 5_000 };
const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

const AUTH_FIELDS = `
  __typename
  ... on AuthSuccess { accessToken refreshToken expiresIn user { id email displayName } }
  ... on UserError { code message field }
`;

let session = load();
let refreshing = null; // the one refresh in flight (a Promise), or null
const inFlight = new Map(); // query + variables -> the Promise of its answer
const listeners = new Set();

function load() {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function store(next) {
  session = next;
  if (next) localStorage.setItem(STORAGE_KEY, JSON.stringify(next));
  else localStorage.removeItem(STORAGE_KEY);
  for (const listener of listeners) listener(session);
}

export function currentUser() {
  return session ? session.user : null;
}

export function onSessionChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export class ApiError extends Error {
  constructor(message, code = "NETWORK", field = null, retryAfter = null) {
    super(message);
    this.code = code;
    this.field = field;
    this.retryAfter = retryAfter;
  }

  get retryable() {
    return this.code === "NETWORK" || this.code === "UNAVAILABLE";
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function post(query, variables, token) {
  const headers = { "content-type": "application/json", accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
    });
  } catch (error) {
    throw new ApiError("The server cannot be reached. Check your connection and retry.");
  }
  if (RETRYABLE_STATUS.has(response.status)) {
    const retryAfter = Number(response.headers.get("retry-after"));
    throw new ApiError(
      "The server is busy for a moment; retrying.",
      "UNAVAILABLE",
      null,
      Number.isFinite(retryAfter) ? retryAfter : null,
    );
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The server answered ${response.status}.`, "HTTP");
  }
  if (body.errors && body.errors.length) {
    throw new ApiError(body.errors[0].message, "GRAPHQL");
  }
  return body.data;
}

function remember(result) {
  if (result.__typename !== "AuthSuccess") {
    throw new ApiError(result.message, result.code, result.field);
  }
  store({
    accessToken: result.accessToken,
    refreshToken: result.refreshToken,
    expiresAt: Date.now() + result.expiresIn * 1000,
    user: result.user,
  });
  return result.user;
}

export async function signUp(email, password, displayName) {
  const data = await post(
    `mutation($input: SignUpInput!) { signUp(input: $input) { ${AUTH_FIELDS} } }`,
    { input: { email, password, displayName } },
  );
  return remember(data.signUp);
}

export async function logIn(email, password) {
  const data = await post(
    `mutation($input: LogInInput!) { logIn(input: $input) { ${AUTH_FIELDS} } }`,
    { input: { email, password } },
  );
  return remember(data.logIn);
}

/** Ends this session, or with `everywhere` every session of the account (all devices). */
export async function logOut({ everywhere = false } = {}) {
  let token = null;
  try {
    token = session && (await accessToken());
  } catch {
    token = session && session.accessToken;
  }
  store(null);
  if (token) {
    try {
      await post(
        "mutation($everywhere: Boolean!) { logOut(everywhere: $everywhere) { __typename } }",
        { everywhere },
        token,
      );
    } catch {
      // The local session is gone either way; an unreachable server lets the token expire.
    }
  }
}

/** Renews the access token now (after the server refused it); one renewal in flight. */
export function refresh() {
  if (!refreshing) {
    const token = session && session.refreshToken;
    refreshing = (async () => {
      if (!token) throw new ApiError("Log in again.", "UNAUTHENTICATED");
      const data = await post(
        `mutation($token: String!) { refreshToken(token: $token) { ${AUTH_FIELDS} } }`,
        { token },
      );
      try {
        remember(data.refreshToken);
      } catch (error) {
        store(null); // the refresh token was refused: the session is over
        throw error;
      }
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** A valid access token, renewed first when it expires soon. */
export async function accessToken() {
  if (!session) throw new ApiError("Log in first.", "UNAUTHENTICATED");
  if (refreshing || Date.now() > session.expiresAt - EARLY_SECONDS * 1000) {
    await refresh();
  }
  return session.accessToken;
}

/** An authenticated GraphQL request; the `data` of its answer. Queries are shared while in
 * flight and retried with full jitter; mutations are sent once (retrying one is the caller's
 * decision: generateCourse carries an idempotency key for that). */
export function gql(query, variables = {}) {
  if (/^\s*mutation\b/.test(query)) return authorized(query, variables);
  const key = JSON.stringify([query, variables]);
  let answer = inFlight.get(key);
  if (!answer) {
    answer = withRetries(() => authorized(query, variables)).finally(() => inFlight.delete(key));
    inFlight.set(key, answer);
  }
  return answer;
}

async function authorized(query, variables) {
  return post(query, variables, await accessToken());
}

async function withRetries(send) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (error) {
      if (!(error instanceof ApiError) || !error.retryable || attempt >= RETRY.attempts) throw error;
      if (typeof navigator !== "undefined" && navigator.onLine === false) throw error;
      const ceiling = Math.min(RETRY.capMs, RETRY.baseMs * 2 ** (attempt - 1));
      let wait = Math.random() * ceiling; // full jitter: clients that failed together spread out
      if (error.retryAfter != null) wait = Math.max(wait, error.retryAfter * 1000);
      await sleep(wait);
    }
  }
}

