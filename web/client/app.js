// The coursegen web client: sign up / log in, the dashboard, generating a course with live
// progress over EventSource, and the course page. Text from the server (and from the model that
// wrote the course) only ever reaches the page through textContent, never as HTML.

import * as api from "./api.js";

const main = document.getElementById("main");
const announcer = document.getElementById("announce");
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
let leave = () => {}; // undoes the current view (closes its EventSource)

/** An element: h("p", {class: "x"}, "text", child). Strings become text nodes. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

function announce(text) {
  announcer.textContent = text;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
  main.focus();
}

function errorBox(error, retry) {
  return h(
    "div",
    { class: "error", role: "alert" },
    h("p", {}, error.message || String(error)),
    retry ? h("button", { type: "button", onclick: retry }, "Retry") : null,
  );
}

// ---- routing: #/ (dashboard), #/jobs/<id>, #/courses/<id> ----

function route() {
  leave();
  leave = () => {};
  const user = api.currentUser();
  renderHeader(user);
  if (!user) return renderAuth();
  const [, kind, id] = location.hash.replace(/^#/, "").split("/");
  if (kind === "jobs" && id) return renderProgress(id);
  if (kind === "courses" && id) return renderCourse(id);
  return renderDashboard();
}

function renderHeader(user) {
  document.getElementById("who").textContent = user ? user.displayName : "";
  document.getElementById("logout").hidden = !user;
}

document.getElementById("logout").addEventListener("click", async () => {
  await api.logOut();
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", route);
api.onSessionChange((session) => {
  if (!session) renderHeader(null);
});

// ---- sign up / log in ----

function renderAuth() {
  const message = h("p", { class: "error", role: "alert" });
  const fields = (withName) => [
    h("label", {}, "Email", h("input", { name: "email", type: "email", required: true, autocomplete: "email" })),
    h("label", {}, "Password", h("input", {
      name: "password", type: "password", required: true, minlength: "8",
      autocomplete: withName ? "new-password" : "current-password",
    })),
    withName
      ? h("label", {}, "Display name", h("input", { name: "displayName", required: true, maxlength: "100" }))
      : null,
  ];
  const submit = (kind) => async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    const button = form.querySelector("button");
    button.disabled = true;
    message.textContent = "";
    try {
      if (kind === "signup") {
        await api.signUp(data.get("email"), data.get("password"), data.get("displayName"));
      } else {
        await api.logIn(data.get("email"), data.get("password"));
      }
      location.hash = "#/";
      route();
    } catch (error) {
      message.textContent = error.message;
      button.disabled = false;
    }
  };
  show(
    h("h1", {}, "Learn anything, one generated course at a time"),
    message,
    h("div", { class: "row" },
      h("section", { class: "card", "aria-labelledby": "signup-title" },
        h("h2", { id: "signup-title" }, "Sign up"),
        h("form", { id: "signup", onsubmit: submit("signup") }, fields(true), h("button", { type: "submit" }, "Create account"))),
      h("section", { class: "card", "aria-labelledby": "login-title" },
        h("h2", { id: "login-title" }, "Log in"),
        h("form", { id: "login", onsubmit: submit("login") }, fields(false), h("button", { type: "submit" }, "Log in")))),
  );
}

// ---- dashboard: the viewer's courses and the generate form ----

const COURSES = `query($after: String) {
  courses(first: 20, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id title status level subjects { id } }
  }
}`;

function renderDashboard() {
  const list = h("ul", { class: "courses", id: "courses", "aria-busy": "true" });
  const status = h("p", { class: "muted" }, "Loading your courses…");
  const more = h("button", { type: "button", hidden: true }, "Load more");
  let after = null;
  const load = async () => {
    status.replaceChildren("Loading your courses…");
    list.setAttribute("aria-busy", "true");
    try {
      const { courses } = await api.gql(COURSES, { after });
      for (const course of courses.nodes) {
        list.append(h("li", {},
          h("a", { href: `#/courses/${course.id}` }, course.title || "(untitled)"),
          h("span", { class: "badge" }, course.status.toLowerCase()),
          h("span", { class: "muted" }, `${course.level.toLowerCase()} · ${course.subjects.length} subjects`)));
      }
      after = courses.pageInfo.endCursor;
      more.hidden = !courses.pageInfo.hasNextPage;
      status.replaceChildren(courses.totalCount ? `${courses.totalCount} course${courses.totalCount === 1 ? "" : "s"}` : "No courses yet: generate one below.");
    } catch (error) {
      status.replaceChildren(errorBox(error, load));
    } finally {
      list.setAttribute("aria-busy", "false");
    }
  };
  more.addEventListener("click", load);
  show(
    h("h1", {}, "Your courses"),
    h("section", { class: "card", "aria-labelledby": "courses-title" },
      h("h2", { id: "courses-title" }, "Courses"), status, list, more),
    generateForm(),
  );
  load();
}

const GENERATE = `mutation($input: GenerateCourseInput!, $key: String) {
  generateCourse(input: $input, idempotencyKey: $key) {
    __typename
    ... on GenerateCourseSuccess { job { id status } course { id } }
    ... on UserError { code message field }
  }
}`;

function generateForm() {
  const message = h("p", { class: "error", role: "alert" });
  let key = null; // one idempotency key per course asked for, kept across retries of the submit
  const number = (name, label, value) =>
    h("label", {}, label, h("input", { name, type: "number", min: "1", max: "12", value: String(value), required: true }));
  const form = h("form", { id: "generate" },
    h("label", {}, "Topic", h("input", {
      name: "topic", required: true, minlength: "3", maxlength: "200",
      placeholder: "e.g. Rust for Python developers",
    })),
    h("label", {}, "Level", h("select", { name: "level" },
      h("option", { value: "BEGINNER" }, "Beginner"),
      h("option", { value: "INTERMEDIATE" }, "Intermediate"),
      h("option", { value: "ADVANCED" }, "Advanced"))),
    h("div", { class: "row" }, number("subjectCount", "Subjects", 3), number("topicsPerSubject", "Topics per subject", 3)),
    h("button", { type: "submit" }, "Generate"),
  );
  form.addEventListener("input", () => {
    key = null; // a different request: a new key
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const button = form.querySelector("button");
    key = key || crypto.randomUUID();
    button.disabled = true;
    message.textContent = "";
    try {
      const { generateCourse: result } = await api.gql(GENERATE, {
        key,
        input: {
          topic: data.get("topic").trim(),
          level: data.get("level"),
          subjectCount: Number(data.get("subjectCount")),
          topicsPerSubject: Number(data.get("topicsPerSubject")),
        },
      });
      if (result.__typename !== "GenerateCourseSuccess") throw new api.ApiError(result.message, result.code);
      location.hash = `#/jobs/${result.job.id}`;
    } catch (error) {
      message.textContent = error.message;
      button.disabled = false;
    }
  });
  return h("section", { class: "card", "aria-labelledby": "generate-title" },
    h("h2", { id: "generate-title" }, "Generate a course"), message, form);
}

// ---- live progress over EventSource ----

const STREAM_TOKEN = `mutation($jobId: ID!) {
  streamToken(jobId: $jobId) { __typename ... on StreamTokenSuccess { url } ... on UserError { message } }
}`;
const CANCEL = `mutation($jobId: ID!) {
  cancelGeneration(jobId: $jobId) { __typename ... on UserError { message } }
}`;

function renderProgress(jobId) {
  const fill = h("div", { class: "fill" });
  const bar = h("div", {
    class: "progress", id: "progress", role: "progressbar", "aria-label": "Generation progress",
    "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0",
  }, fill);
  const stage = h("p", { id: "stage", "aria-live": "polite" }, "Waiting for the writer…");
  const log = h("ol", { class: "log", id: "events" });
  const outcome = h("div", { id: "outcome" });
  const cancel = h("button", { type: "button", id: "cancel" }, "Cancel");
  let source = null;
  let lastSeq = 0;
  let done = false;

  const finish = (event) => {
    done = true;
    cancel.hidden = true;
    if (source) source.close();
    if (event.type === "completed") {
      const courseId = event.courseId;
      outcome.replaceChildren(h("p", {}, "Your course is ready. ",
        h("a", { href: `#/courses/${courseId}`, id: "open-course" }, "Open the course")));
      announce("Course generated.");
    } else if (event.type === "failed") {
      outcome.replaceChildren(h("p", { class: "error", role: "alert" }, `Generation failed: ${event.message || "unknown error"}`));
    } else {
      outcome.replaceChildren(h("p", { role: "status" }, "Generation cancelled."));
    }
    outcome.append(h("p", {}, h("a", { href: "#/" }, "Back to your courses")));
  };

  const onEvent = (message) => {
    const event = JSON.parse(message.data);
    if (event.seq <= lastSeq) return; // already shown
    lastSeq = event.seq;
    const percent = Math.round(event.progress * 100);
    bar.setAttribute("aria-valuenow", String(percent));
    bar.setAttribute("aria-valuetext", `${percent} %`);
    fill.style.width = `${percent}%`;
    stage.textContent = `${percent} % · ${event.message || event.type}`;
    log.append(h("li", {}, event.message || event.type));
    if (TERMINAL.has(event.type)) finish(event);
  };

  const open = async () => {
    if (done) return;
    try {
      const { streamToken: result } = await api.gql(STREAM_TOKEN, { jobId });
      if (result.__typename !== "StreamTokenSuccess") throw new api.ApiError(result.message);
      if (done) return;
      source = new EventSource(`${result.url}&after=${lastSeq}`);
      source.onmessage = onEvent;
      source.onerror = () => {
        // EventSource reconnects by itself (with Last-Event-ID) unless the server refused it,
        // e.g. once the stream token expired: then a new token, resuming after the last event.
        if (!done && source.readyState === EventSource.CLOSED) setTimeout(open, 500 + Math.random() * 1000);
      };
    } catch (error) {
      outcome.replaceChildren(errorBox(error, open));
    }
  };

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      const { cancelGeneration: result } = await api.gql(CANCEL, { jobId });
      if (result.__typename !== "CancelGenerationSuccess") throw new api.ApiError(result.message);
    } catch (error) {
      outcome.replaceChildren(errorBox(error));
      cancel.disabled = false;
    }
  });

  leave = () => {
    done = true;
    if (source) source.close();
  };
  show(
    h("h1", {}, "Generating your course"),
    h("section", { class: "card", "aria-labelledby": "progress-title" },
      h("h2", { id: "progress-title" }, "Progress"), bar, stage, cancel, outcome, log),
  );
  open();
}

// ---- the course page ----

const COURSE = `query($id: ID!) {
  course(id: $id) {
    id title description level status
    subjects { id title summary topics { id title content estimatedMinutes objectives } }
  }
}`;

async function renderCourse(id) {
  show(h("p", { class: "muted", "aria-busy": "true" }, "Loading the course…"));
  let course;
  try {
    ({ course } = await api.gql(COURSE, { id }));
  } catch (error) {
    return show(errorBox(error, () => renderCourse(id)));
  }
  if (!course) return show(h("p", { class: "error" }, "No such course."), h("a", { href: "#/" }, "Back"));
  show(
    h("p", {}, h("a", { href: "#/" }, "← Your courses")),
    h("h1", { id: "course-title" }, course.title),
    h("p", { class: "muted" }, `${course.level.toLowerCase()} · ${course.status.toLowerCase()}`),
    h("p", {}, course.description),
    ...course.subjects.map((subject) =>
      h("section", { class: "card subject", "aria-labelledby": `s-${subject.id}` },
        h("h2", { id: `s-${subject.id}` }, subject.title),
        h("p", { class: "muted" }, subject.summary),
        ...subject.topics.map((topic) =>
          h("article", { class: "topic" },
            h("h3", {}, topic.title),
            h("p", { class: "muted" }, `${topic.estimatedMinutes} min`),
            topic.objectives.length ? h("ul", {}, topic.objectives.map((o) => h("li", {}, o))) : null,
            h("div", { class: "content" }, topic.content))))),
  );
}

route();
