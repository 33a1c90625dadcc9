// The coursegen web client: sign up / log in, the dashboard, generating a course with live
// progress over EventSource, and the course page, which works offline: it reads the learner's
// replica (replica.js) and queues completes, bookmarks and notes there. Text from the server
// reaches the page through textContent, and the model's Markdown only through markdown.js's
// sanitizer, never as raw HTML.

import * as api from "./api.js";
import { renderMarkdown } from "./markdown.js";
import * as replica from "./replica.js";

const main = document.getElementById("main");
const announcer = document.getElementById("announce");
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
let leave = () => {}; // undoes the current view (closes its EventSource)
let refreshView = null; // re-renders the current view from the replica after a sync, if it can
// The server's own input limits (from generation/requests.py), put in the page by the server.
const LIMITS = JSON.parse(document.querySelector("meta[name=coursegen-limits]").content);

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
  refreshView = null;
  const user = api.currentUser();
  renderHeader(user);
  if (!user) return renderAuth();
  replica.open(user).catch((error) => announce(`Offline storage is unavailable: ${error.message}`));
  const [, kind, id] = location.hash.replace(/^#/, "").split("/");
  if (kind === "jobs" && id) return renderProgress(id);
  if (kind === "courses" && id) return renderCourse(id);
  return renderDashboard();
}

function renderHeader(user) {
  document.getElementById("who").textContent = user ? user.displayName : "";
  document.getElementById("logout").hidden = !user;
  document.getElementById("logout-all").hidden = !user;
  renderSyncStatus();
}

function renderSyncStatus() {
  const node = document.getElementById("sync-status");
  const { online, syncing, pending, error } = replica.status;
  const waiting = pending ? `${pending} change${pending === 1 ? "" : "s"} waiting to sync` : "";
  let text = "";
  if (!api.currentUser()) text = "";
  else if (!online) text = `Offline: changes are kept on this device${waiting ? ` (${waiting})` : ""}`;
  else if (syncing) text = "Syncing…";
  else if (error) text = `Not synced yet (${error}); retrying${waiting ? `, ${waiting}` : ""}`;
  else text = waiting || "All changes synced";
  node.textContent = text;
  node.dataset.state = !online ? "offline" : pending ? "pending" : "synced";
}

async function logOut(everywhere) {
  await replica.close();
  await api.logOut({ everywhere });
  location.hash = "#/";
  route();
}

document.getElementById("logout").addEventListener("click", () => logOut(false));
document.getElementById("logout-all").addEventListener("click", () => logOut(true));
window.addEventListener("hashchange", route);
api.onSessionChange((session) => {
  if (!session) renderHeader(null);
});
replica.onChange(({ kind, rejected }) => {
  renderSyncStatus();
  for (const { result, mutation } of rejected) {
    const what = DESCRIBE[mutation?.name] ?? "A change";
    const text = `${what} was undone: ${result.message}`;
    showRejection(text);
  }
  if (kind === "changed" && refreshView) refreshView();
});

const DESCRIBE = {
  completeTopic: "Marking a topic complete",
  uncompleteTopic: "Marking a topic not complete",
  bookmarkTopic: "A bookmark",
  unbookmarkTopic: "Removing a bookmark",
  createNote: "A new note",
  saveNote: "A note edit",
  deleteNote: "Deleting a note",
};

function showRejection(text) {
  const box = document.getElementById("rejections");
  box.hidden = false;
  box.append(h("p", {}, text));
  announce(text);
}

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

const COURSES = `query($after: String, $filter: CourseFilterInput) {
  courses(first: 20, after: $after, filter: $filter) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id title status level subjects { id title topics { id } } }
  }
}`;

function courseItem(course) {
  const topics = course.subjects.reduce((n, s) => n + (s.topics ? s.topics.length : 0), 0);
  return h("li", { "data-course-id": course.id },
    h("a", { href: `#/courses/${course.id}` }, course.title || "(untitled)"),
    h("span", { class: "badge" }, course.status.toLowerCase()),
    h("span", { class: "muted" }, `${course.level.toLowerCase()} · ${course.subjects.length} subjects · ${topics} topics`));
}

/** The rows of one type in a replica view (Map "type/id" -> row). */
function rowsOf(rows, type) {
  const out = [];
  for (const [key, row] of rows) if (key.startsWith(`${type}/`)) out.push(row);
  return out;
}

const byRank = (a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0);

const skeletons = (n) => Array.from({ length: n }, () => h("li", { class: "skeleton", "aria-hidden": "true" }, h("span"), h("span")));

function renderDashboard() {
  const list = h("ul", { class: "courses", id: "courses", "aria-busy": "true" });
  const status = h("p", { class: "muted", id: "courses-status" }, "Loading your courses…");
  const more = h("button", { type: "button", hidden: true, id: "more" }, "Load more");
  const sentinel = h("div", { class: "sentinel", "aria-hidden": "true" });
  const filters = h("form", { class: "row filters", id: "filters", role: "search" },
    h("label", {}, "Status", h("select", { name: "status" },
      h("option", { value: "" }, "Any"),
      ...["READY", "GENERATING", "DRAFT", "FAILED"].map((v) => h("option", { value: v }, v.toLowerCase())))),
    h("label", {}, "Level", h("select", { name: "level" },
      h("option", { value: "" }, "Any"),
      ...["BEGINNER", "INTERMEDIATE", "ADVANCED"].map((v) => h("option", { value: v }, v.toLowerCase())))));
  let after = null;
  let loading = false;
  let generation = 0; // a filter change abandons pages still loading for the old filter
  const filter = () => {
    const data = new FormData(filters);
    const out = {};
    if (data.get("status")) out.status = data.get("status");
    if (data.get("level")) out.level = data.get("level");
    return Object.keys(out).length ? out : null;
  };
  const load = async () => {
    if (loading) return;
    loading = true;
    const mine = generation;
    const placeholders = skeletons(after ? 2 : 4);
    list.append(...placeholders);
    status.replaceChildren(after ? "Loading more…" : "Loading your courses…");
    list.setAttribute("aria-busy", "true");
    try {
      const { courses } = await api.gql(COURSES, { after, filter: filter() });
      if (mine !== generation) return;
      for (const course of courses.nodes) list.append(courseItem(course));
      after = courses.pageInfo.endCursor;
      more.hidden = !courses.pageInfo.hasNextPage;
      const count = courses.totalCount;
      status.replaceChildren(count ? `${count} course${count === 1 ? "" : "s"}` : filter() ? "No courses match." : "No courses yet: generate one below.");
    } catch (error) {
      if (mine !== generation) return;
      if (error.code === "NETWORK" && !after && (await showFromReplica())) return;
      status.replaceChildren(errorBox(error, load));
    } finally {
      placeholders.forEach((node) => node.remove());
      if (mine === generation) {
        loading = false;
        list.setAttribute("aria-busy", "false");
      }
    }
  };
  // Offline: the courses as last synced to this device.
  const showFromReplica = async () => {
    const rows = await replica.view();
    const courses = rowsOf(rows, "course");
    if (!courses.length) return false;
    for (const course of courses) {
      const subjects = rowsOf(rows, "subject").filter((s) => s.courseId === course.id);
      const topics = rowsOf(rows, "topic");
      list.append(courseItem({
        ...course,
        status: course.status,
        level: course.level,
        subjects: subjects.map((s) => ({ ...s, topics: topics.filter((t) => t.subjectId === s.id) })),
      }));
    }
    status.replaceChildren(h("span", { class: "offline-note" }, "Offline: your courses as last synced to this device."));
    return true;
  };
  const restart = () => {
    generation += 1;
    loading = false;
    after = null;
    list.replaceChildren();
    more.hidden = true;
    load();
  };
  filters.addEventListener("change", restart);
  more.addEventListener("click", load);
  // Infinite scroll: the next page loads as the end of the list comes into view (the button
  // stays for keyboards and for browsers without IntersectionObserver).
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && !more.hidden && !loading) load();
  });
  observer.observe(sentinel);
  leave = () => observer.disconnect();
  show(
    h("h1", {}, "Your courses"),
    h("section", { class: "card", "aria-labelledby": "courses-title" },
      h("h2", { id: "courses-title" }, "Courses"), filters, status, list, more, sentinel),
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
  // Each field checked as the user types, against the server's limits; the hint says why.
  const hint = (name) => h("small", { class: "hint", id: `hint-${name}` });
  const text = (name, label, attrs, multiline = false) => {
    const limit = LIMITS[name];
    return h("label", {}, label,
      h(multiline ? "textarea" : "input", {
        name, "aria-describedby": `hint-${name}`,
        minlength: limit.minLength ? String(limit.minLength) : null,
        maxlength: String(limit.maxLength), ...attrs,
      }),
      hint(name));
  };
  const number = (name, label, value) => {
    const limit = LIMITS[name];
    return h("label", {}, label,
      h("input", { name, type: "number", min: String(limit.minimum), max: String(limit.maximum),
        value: String(value), required: true, "aria-describedby": `hint-${name}` }),
      hint(name));
  };
  const form = h("form", { id: "generate", novalidate: true },
    text("topic", "Topic", { required: true, placeholder: "e.g. Rust for Python developers" }),
    text("audience", "Audience (optional)", { placeholder: "e.g. data analysts" }),
    h("label", {}, "Level", h("select", { name: "level" },
      h("option", { value: "BEGINNER" }, "Beginner"),
      h("option", { value: "INTERMEDIATE" }, "Intermediate"),
      h("option", { value: "ADVANCED" }, "Advanced"))),
    h("div", { class: "row" }, number("subjectCount", "Subjects", 3), number("topicsPerSubject", "Topics per subject", 3)),
    text("notes", "Anything else the writer should know (optional)", { rows: "2" }, true),
    h("button", { type: "submit" }, "Generate"),
  );
  const check = (input) => {
    const limit = LIMITS[input.name];
    if (!limit) return true;
    let problem = "";
    let note = "";
    if (input.type === "number") {
      const value = Number(input.value);
      if (input.value === "" || !Number.isInteger(value) || value < limit.minimum || value > limit.maximum) {
        problem = `A whole number from ${limit.minimum} to ${limit.maximum}.`;
      }
    } else {
      const length = input.value.trim().length;
      const optional = !input.required && length === 0;
      if (!optional && limit.minLength && length < limit.minLength) problem = `At least ${limit.minLength} characters.`;
      else if (length > limit.maxLength) problem = `At most ${limit.maxLength} characters.`;
      note = `${length} / ${limit.maxLength}`;
    }
    input.setCustomValidity(problem);
    input.setAttribute("aria-invalid", problem ? "true" : "false");
    const out = document.getElementById(`hint-${input.name}`) || form.querySelector(`#hint-${input.name}`);
    out.textContent = problem || note;
    out.classList.toggle("error", Boolean(problem));
    return !problem;
  };
  form.addEventListener("input", (event) => {
    key = null; // a different request: a new key
    if (event.target.name) check(event.target);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = [...form.querySelectorAll("input, textarea")];
    const bad = fields.filter((input) => !check(input));
    if (bad.length) {
      bad[0].focus();
      return;
    }
    const data = new FormData(form);
    const button = form.querySelector("button[type=submit]");
    key = key || crypto.randomUUID();
    button.disabled = true;
    message.textContent = "";
    try {
      const { generateCourse: result } = await api.gql(GENERATE, {
        key,
        input: {
          topic: data.get("topic").trim(),
          ...(data.get("audience").trim() ? { audience: data.get("audience").trim() } : {}),
          ...(data.get("notes").trim() ? { notes: data.get("notes").trim() } : {}),
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
    log.append(h("li", { "data-seq": String(event.seq) }, event.message || event.type));
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
      // Each (re)connection, counted where a test or a curious user can see it.
      source.onopen = () => {
        log.dataset.connections = String(Number(log.dataset.connections || 0) + 1);
      };
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

// ---- the course page: read from this device's replica, changes queued there ----

async function renderCourse(id) {
  show(h("p", { class: "muted", "aria-busy": "true" }, "Loading the course…"));
  let rows;
  try {
    await replica.open(api.currentUser());
    rows = await replica.view();
    if (!rows.has(`course/${id}`)) {
      await replica.syncSoon(); // not on this device yet: fetch it
      rows = await replica.view();
    }
  } catch (error) {
    return show(errorBox(error, () => renderCourse(id)));
  }
  if (!rows.has(`course/${id}`)) {
    const why = navigator.onLine
      ? "No such course, or it is not shared with you."
      : "This course is not on this device yet: open it once while online.";
    return show(errorBox(new Error(why), () => renderCourse(id)), h("p", {}, h("a", { href: "#/" }, "← Your courses")));
  }
  const page = coursePage(id);
  page.update(rows);
  show(page.node);
  refreshView = async () => page.update(await replica.view());
  replica.syncSoon(); // and catch up with the server in the background
}

function coursePage(courseId) {
  const title = h("h1", { id: "course-title" });
  const meta = h("p", { class: "muted" });
  const description = h("p");
  const body = h("div", { id: "syllabus" });
  const node = h("div", {},
    h("p", {}, h("a", { href: "#/" }, "← Your courses")), title, meta, description, body);
  let built = ""; // the syllabus's shape (subject and topic ids) the DOM was built for
  const topics = new Map(); // topic id -> its controls

  const build = (subjects, topicsBySubject) => {
    topics.clear();
    body.replaceChildren(...subjects.map((subject) =>
      h("section", { class: "card subject", "aria-labelledby": `s-${subject.id}` },
        h("h2", { id: `s-${subject.id}` }, subject.title),
        h("p", { class: "muted" }, subject.summary),
        ...(topicsBySubject.get(subject.id) ?? []).map(topicArticle))));
  };

  const topicArticle = (topic) => {
    const done = h("input", { type: "checkbox", class: "done" });
    const bookmark = h("button", { type: "button", class: "bookmark secondary", "aria-pressed": "false" }, "Bookmark");
    const note = h("textarea", { class: "note-body", rows: "3", maxlength: String(LIMITS.note.maxLength), "aria-describedby": `ns-${topic.id}` });
    const save = h("button", { type: "button", class: "save-note secondary" }, "Save note");
    const noteState = h("span", { class: "muted note-state", id: `ns-${topic.id}` });
    const others = h("div", { class: "other-notes" });
    const controls = { done, bookmark, note, save, noteState, others, dirty: false, noteRow: null, topic };
    topics.set(topic.id, controls);
    done.addEventListener("change", () =>
      replica.mutate(done.checked ? "completeTopic" : "uncompleteTopic", { topicId: topic.id }));
    bookmark.addEventListener("click", () =>
      replica.mutate(bookmark.getAttribute("aria-pressed") === "true" ? "unbookmarkTopic" : "bookmarkTopic", { topicId: topic.id }));
    note.addEventListener("input", () => {
      controls.dirty = true;
      noteState.textContent = "Not saved";
    });
    save.addEventListener("click", async () => {
      const text = note.value;
      const row = controls.noteRow;
      if (text.length > LIMITS.note.maxLength) {
        noteState.textContent = `At most ${LIMITS.note.maxLength} characters.`;
        return;
      }
      controls.dirty = false;
      if (row && !text.trim()) await replica.mutate("deleteNote", { noteId: row.id });
      else if (row) await replica.mutate("saveNote", { noteId: row.id, body: text }, { baseVersion: row.version });
      else if (text.trim()) await replica.mutate("createNote", { noteId: crypto.randomUUID(), topicId: topic.id, body: text });
    });
    return h("article", { class: "topic", id: `t-${topic.id}`, "data-topic-id": topic.id, "aria-labelledby": `th-${topic.id}` },
      h("h3", { id: `th-${topic.id}` }, topic.title),
      h("div", { class: "actions" }, h("label", { class: "check" }, done, "Completed"), bookmark),
      h("p", { class: "muted" }, `${topic.estimatedMinutes} min`),
      topic.objectives && topic.objectives.length ? h("ul", { class: "objectives" }, topic.objectives.map((o) => h("li", {}, o))) : null,
      h("div", { class: "content" }, renderMarkdown(topic.content)),
      h("div", { class: "note" }, h("label", {}, "Your note", note), h("div", { class: "row" }, save, noteState), others));
  };

  const update = (rows) => {
    const course = rows.get(`course/${courseId}`);
    if (!course) {
      body.replaceChildren(h("p", { class: "error", role: "alert" }, "This course was deleted or is no longer shared with you."));
      built = "";
      return;
    }
    title.textContent = course.title;
    meta.textContent = `${String(course.level).toLowerCase()} · ${String(course.status).toLowerCase()}`;
    description.textContent = course.description ?? "";
    const subjects = rowsOf(rows, "subject").filter((s) => s.courseId === courseId).sort(byRank);
    const topicsBySubject = new Map(subjects.map((s) => [s.id, []]));
    for (const topic of rowsOf(rows, "topic")) topicsBySubject.get(topic.subjectId)?.push(topic);
    for (const list of topicsBySubject.values()) list.sort(byRank);
    const shape = JSON.stringify(subjects.map((s) => [s.id, s.title, (topicsBySubject.get(s.id) ?? []).map((t) => [t.id, t.title, t.content])]));
    if (shape !== built) {
      build(subjects, topicsBySubject);
      built = shape;
    }
    const notes = rowsOf(rows, "note");
    for (const [topicId, c] of topics) {
      const progress = rows.get(`progress/${topicId}`);
      c.done.checked = Boolean(progress && progress.completed);
      const marked = rows.has(`bookmark/${topicId}`);
      c.bookmark.setAttribute("aria-pressed", String(marked));
      c.bookmark.textContent = marked ? "Bookmarked" : "Bookmark";
      const mine = notes.filter((n) => n.topicId === topicId).sort((a, b) => (a.id < b.id ? -1 : 1));
      c.noteRow = c.noteRow && mine.find((n) => n.id === c.noteRow.id) ? mine.find((n) => n.id === c.noteRow.id) : mine[0] ?? null;
      // What the learner is typing is never overwritten by a sync.
      if (!c.dirty && document.activeElement !== c.note) {
        c.note.value = c.noteRow ? c.noteRow.body : "";
        c.noteState.textContent = c.noteRow ? "Saved" : "";
      }
      const rest = mine.filter((n) => n !== c.noteRow);
      c.others.replaceChildren(...rest.map((n) => h("p", { class: "muted other-note" }, "Another version of this note: ", n.body)));
    }
  };
  return { node, update };
}

// The app shell (this page and its modules) is kept by a service worker, so the page opens
// offline; the learner's data is in IndexedDB (replica.js).
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js").catch((error) => announce(`Offline use is unavailable: ${error.message}`));
}

route();
