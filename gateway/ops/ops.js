// The operations page: fetches /admin/overview and /health every few seconds with the
// admin token kept in this tab (sessionStorage), and drives the admin API's buttons.
"use strict";
const REFRESH_MS = 3000;
const $ = (selector) => document.querySelector(selector);

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function row(cells) {
  const tr = document.createElement("tr");
  cells.forEach((c) => tr.appendChild(c));
  return tr;
}

function note(text, span, className) {
  const td = cell(text, className || "empty");
  td.colSpan = span;
  return row([td]);
}

function token() { return sessionStorage.getItem("lomash-admin-token") || ""; }

async function api(method, path) {
  const answer = await fetch(path, {
    method, headers: { Authorization: "Bearer " + token() }, cache: "no-store",
  });
  if (answer.status === 401) throw new Error("the admin token was refused");
  if (!answer.ok) throw new Error(method + " " + path + ": " + answer.status);
  return answer.json();
}

function say(text) {
  const message = $("#message");
  message.textContent = text || "";
  message.hidden = !text;
}

const BREAKER_CLASS = { closed: "ok", half_open: "warn", open: "bad" };

function showActors(actors) {
  const body = $("#actors tbody");
  body.replaceChildren(...actors.map((a) => row([
    cell(a.name),
    cell(a.running ? "running" : "stopped", a.running ? "ok" : "bad"),
    cell(a.queued + " / " + a.capacity, "num"),
    cell(a.in_flight, "num"),
    cell(a.processed, "num"),
    cell(a.restarts, "num " + (a.restarts ? "warn" : "")),
    cell(a.crashed, "num " + (a.crashed ? "bad" : "")),
    cell(a.breaker ? a.breaker.state : "-", a.breaker ? BREAKER_CLASS[a.breaker.state] : ""),
  ])));
  const transitions = [];
  actors.forEach((a) => (a.breaker ? a.breaker.recent : []).forEach(
    (t) => transitions.push({ at: t.at, text: a.name + " \u2192 " + t.state, state: t.state })));
  transitions.sort((x, y) => y.at - x.at);
  const list = $("#transitions");
  list.replaceChildren(...transitions.slice(0, 20).map((t) => {
    const item = document.createElement("li");
    item.className = BREAKER_CLASS[t.state] || "";
    item.textContent = new Date(t.at * 1000).toLocaleTimeString() + "  " + t.text;
    return item;
  }));
  if (!transitions.length) list.replaceChildren(Object.assign(
    document.createElement("li"), { className: "empty", textContent: "none since start" }));
}

function showQueues(data) {
  const body = $("#queues tbody");
  if (data.queues_error) {
    body.replaceChildren(note("Redis: " + data.queues_error, 5, "bad"));
    return;
  }
  body.replaceChildren(...data.queues.map((q) => row([
    cell(q.queue), cell(q.waiting, "num"), cell(q.active, "num"), cell(q.delayed, "num"),
    cell(q.dead, "num " + (q.dead ? "bad" : "")),
  ])));
  const dead = $("#dead");
  const jobs = [];
  Object.entries(data.dead).forEach(([queue, list]) => list.forEach((job) => {
    const box = document.createElement("div");
    box.className = "job";
    box.dataset.jobId = job.job_id;
    const head = document.createElement("header");
    const title = document.createElement("strong");
    title.textContent = queue + " / " + job.kind + " / " + job.job_id;
    const requeue = Object.assign(document.createElement("button"), { textContent: "Requeue" });
    requeue.className = "requeue";
    requeue.addEventListener("click", () => act("POST",
      "/admin/queues/" + encodeURIComponent(queue) + "/dead/" + encodeURIComponent(job.job_id)
      + "/requeue"));
    const purge = Object.assign(document.createElement("button"), { textContent: "Purge" });
    purge.className = "danger purge";
    purge.addEventListener("click", () => {
      if (!window.confirm("Purge " + job.job_id + " for good?")) return;
      act("DELETE",
        "/admin/queues/" + encodeURIComponent(queue) + "/dead/" + encodeURIComponent(job.job_id));
    });
    head.append(title, requeue, purge);
    const history = document.createElement("ol");
    job.history.forEach((attempt) => {
      const item = document.createElement("li");
      item.textContent = "attempt " + attempt.attempt + ": " + attempt.error_type + ": "
        + attempt.error_message;
      history.appendChild(item);
    });
    box.append(head, history);
    jobs.push(box);
  }));
  if (!jobs.length) {
    jobs.push(Object.assign(document.createElement("p"),
      { className: "empty", textContent: "No dead jobs." }));
  }
  dead.replaceChildren(...jobs);
}

const OUTCOME_CLASS = { SENT: "ok", RETRYING: "warn", FAILED: "bad", SKIPPED: "" };

function showEmails(data) {
  const body = $("#emails tbody");
  const log = $("#notifications tbody");
  if (data.failed_emails_error) {
    body.replaceChildren(note("Postgres: " + data.failed_emails_error, 4, "bad"));
    log.replaceChildren(note("Postgres: " + data.failed_emails_error, 5, "bad"));
    return;
  }
  log.replaceChildren(...data.notifications.map((n) => row([
    cell(new Date(n.attempted_at).toLocaleTimeString()), cell(n.kind), cell(n.reference),
    cell(n.channel + " / " + n.provider),
    cell(n.status + (n.error ? ": " + n.error : ""), OUTCOME_CLASS[n.status]),
  ])));
  if (!data.notifications.length) log.replaceChildren(note("none yet", 5));
  body.replaceChildren(...data.failed_emails.map((f) => row([
    cell(f.reference), cell(f.subject), cell(f.attempts, "num"), cell(f.retry_until),
  ])));
  if (!data.failed_emails.length) body.replaceChildren(note("none", 4));
}

async function act(method, path) {
  try { await api(method, path); await refresh(); } catch (error) { say(error.message); }
}

async function health() {
  const pill = $("#health");
  try {
    const answer = await fetch("/health", { cache: "no-store" });
    const data = await answer.json();
    pill.textContent = data.status + " \u00b7 db " + data.checks.database + " \u00b7 redis "
      + data.checks.redis;
    pill.className = "pill " + ({ healthy: "ok", degraded: "warn" }[data.status] || "bad");
  } catch (error) {
    pill.textContent = "no answer";
    pill.className = "pill bad";
  }
}

async function refresh() {
  await health();
  if (!token()) return;
  try {
    const data = await api("GET", "/admin/overview");
    showActors(data.actors);
    showQueues(data);
    showEmails(data);
    $("#board").hidden = false;
    $("#login").hidden = true;
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
    say("");
  } catch (error) {
    say(error.message);
  }
}

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("lomash-admin-token", $("#token").value);
  refresh();
});
refresh();
setInterval(refresh, REFRESH_MS);
