// The dashboard's script: a login form, then the admin API read once a second and drawn.
//
// The credentials: the form's user and password become an `Authorization: Basic` header kept
// in this tab's sessionStorage and sent with every call, made with `credentials: "omit"`, so
// that the browser never remembers them nor prompts for them (broker/admin/src/dashboard.rs
// says why). Everything the broker reports is written with textContent, never as HTML: client
// ids and topics are chosen by whoever connects.

import {
  LineChart, formatBytes, formatCount, formatDuration, formatPercent,
} from "/dashboard/charts.js";

const POLL_MS = 1000;
// The configuration and the server's status change rarely: read every this many polls.
const SLOW_EVERY_POLLS = 10;
// Listing connections and subscriptions makes every shard walk all its sessions (12 to 14 ns
// each, docs/admin.md), and so do the Server figures and /metrics: past this many sessions the
// listings are read every SLOW_EVERY_POLLS polls only, so that an open dashboard costs a shard
// with a million sessions two walks a second rather than four.
const LARGE_SESSIONS = 100_000;
// A call not answered in this time is given up (the API itself waits 5 s for the shards).
const REQUEST_TIMEOUT_MS = 6000;
// Rates are averaged over this long: the shards publish their counters once a second, so a
// rate over one second would jump between 0 and twice the truth as the two clocks drift.
const RATE_WINDOW_MS = 5000;
const CHART_WINDOW_MS = 5 * 60 * 1000;
const TOP_SUBSCRIPTIONS = 10;
// The API's largest ResultCount.
const CONNECTIONS_LISTED = 100;
const AUTHORIZATION = "ironsight.authorization";
const USER = "ironsight.user";
const POLICY_TYPES = ["ConnectionPolicy", "TopicPolicy", "SubscriptionPolicy", "ConfigurationPolicy"];

const byId = (id) => document.getElementById(id);

// A refusal from the API, with its HTTP status and its message.
class Refused extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// `Basic base64(user:password)`, the text UTF-8 (btoa alone takes only Latin-1).
function basic(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  return `Basic ${btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""))}`;
}

// One API call: its JSON (or /metrics's text), or a Refused.
async function call(method, path, { body, authorization = sessionStorage.getItem(AUTHORIZATION) } = {}) {
  const headers = { Authorization: authorization ?? "" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  try {
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store", redirect: "error", signal: abort.signal,
    });
    const text = await response.text();
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        message = JSON.parse(text).Message ?? message;
      } catch {
        // Not Amlen's shape (a proxy's page): the status says enough.
      }
      throw new Refused(response.status, message);
    }
    return path === "/metrics" ? text : JSON.parse(text);
  } catch (error) {
    if (error instanceof Refused) throw error;
    throw new Refused(0, abort.signal.aborted
      ? "the broker did not answer in time"
      : `the broker cannot be reached (${error.message})`);
  } finally {
    clearTimeout(timer);
  }
}

// --- rates from counters -----------------------------------------------------------------

// Per-second rates of counters, each over the last RATE_WINDOW_MS of its samples.
class Rates {
  constructor() {
    this.samples = new Map(); // key -> [[t, value]]
  }

  // The rate of counter `key` now that it reads `value` at `t`, or null until samples span a
  // second. A counter that went down (the broker restarted) starts over.
  rate(key, t, value) {
    let list = this.samples.get(key);
    if (!list || value < list[list.length - 1][1]) {
      list = [];
      this.samples.set(key, list);
    }
    list.push([t, value]);
    while (list.length > 2 && t - list[1][0] >= RATE_WINDOW_MS) list.shift();
    const [t0, v0] = list[0];
    return t - t0 >= 1000 ? ((value - v0) * 1000) / (t - t0) : null;
  }

  // Forgets counters not read for a window (an endpoint removed, a shard gone).
  prune(t) {
    for (const [key, list] of this.samples) {
      if (t - list[list.length - 1][0] > RATE_WINDOW_MS) this.samples.delete(key);
    }
  }
}

// --- the page's state ----------------------------------------------------------------------

const charts = {
  connections: new LineChart(byId("chart-connections"), { windowMs: CHART_WINDOW_MS, format: formatCount }),
  messages: new LineChart(byId("chart-messages"), { windowMs: CHART_WINDOW_MS, format: formatCount }),
  memory: new LineChart(byId("chart-memory"), { windowMs: CHART_WINDOW_MS, format: formatBytes }),
  endpoints: new LineChart(byId("chart-endpoints"), { windowMs: CHART_WINDOW_MS, format: formatCount }),
  shards: new LineChart(byId("chart-shards"), { windowMs: CHART_WINDOW_MS, format: formatCount }),
  cpu: new LineChart(byId("chart-cpu"), { windowMs: CHART_WINDOW_MS, format: formatPercent }),
};

// A login or a logout starts a new generation; a poll of an older one draws nothing.
let generation = 0;
let timer = null;
let polls = 0;
let rates = new Rates();
// Sessions in the last Server answer.
let sessions = 0;
// Each listed connection's Close button by "client id, address", kept across redraws: the
// table is rebuilt every second, and a press and a release landing on two different buttons
// would make no click.
let closeButtons = new Map();

// --- drawing helpers -----------------------------------------------------------------------

function setText(id, text) {
  byId(id).textContent = text;
}

function addCell(row, text, className) {
  const cell = row.insertCell();
  cell.textContent = text;
  if (className) cell.className = className;
  return cell;
}

// A bar `fraction` (0 to 1) full.
function addBar(row, fraction) {
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("span");
  fill.style.width = `${Math.round(Math.min(1, Math.max(0, fraction)) * 100)}%`;
  bar.append(fill);
  row.insertCell().append(bar);
}

// Replaces a table's rows with one per item, or a line saying there are none.
function fillTable(id, items, addRow, none) {
  const table = byId(id);
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const item of items) addRow(body.insertRow(), item);
  if (!items.length && none) {
    const cell = addCell(body.insertRow(), none, "empty");
    cell.colSpan = table.tHead.rows[0].cells.length;
  }
}

const rateText = (value) => (value === null ? "…" : formatCount(value));

// Runs `draw` with the answer named `name`, or shows why there is none in `<errorId>`.
function section(errorId, answers, name, draw) {
  const error = answers.errors[name];
  if (!(name in answers.got) && !error) return; // not asked this time
  try {
    if (error) throw error;
    draw(answers.got[name]);
    setText(errorId, "");
  } catch (e) {
    setText(errorId, e instanceof Refused && e.status === 403 ? `Not shown: ${e.message}` : `${name}: ${e.message}`);
  }
}

// --- each part ------------------------------------------------------------------------------

function drawServer(server, t) {
  const s = server.Server;
  const messagesIn = rates.rate("in", t, s.MsgRead);
  const messagesOut = rates.rate("out", t, s.MsgWrite);
  setText("connections", String(s.ActiveConnections));
  setText("messages-in", rateText(messagesIn));
  setText("messages-out", rateText(messagesOut));
  setText("sessions", formatCount(s.ClientSessions));
  sessions = s.ClientSessions;
  setText("subscriptions", formatCount(s.Subscriptions));
  setText("buffered", formatCount(s.BufferedMessages));
  setText("retained", formatCount(s.RetainedMessages));
  charts.connections.push(t, { connections: s.ActiveConnections });
  charts.messages.push(t, { in: messagesIn, out: messagesOut });
}

function drawMemory(memory, t) {
  const m = memory.Memory;
  setText("memory", formatBytes(m.ServerResidentSetBytes));
  byId("memory").title = `machine: ${formatBytes(m.MemoryFreeBytes)} of `
    + `${formatBytes(m.MemoryTotalBytes)} free (${m.MemoryFreePercent}%)`;
  charts.memory.push(t, { resident: m.ServerResidentSetBytes });
}

function drawEndpoints(endpoints, t) {
  const rows = endpoints.Endpoint.map((e) => ({
    ...e,
    in: rates.rate(`endpoint-in ${e.Name}`, t, e.ReadMsgs),
    out: rates.rate(`endpoint-out ${e.Name}`, t, e.WriteMsgs),
  }));
  const total = rows.reduce((sum, e) => sum + (e.in ?? 0) + (e.out ?? 0), 0);
  rows.sort((a, b) => a.Name.localeCompare(b.Name));
  fillTable("endpoints", rows, (row, e) => {
    addCell(row, e.Name);
    addCell(row, `${e.IPAddr}:${e.Port}`);
    addCell(row, e.Enabled ? "yes" : "no");
    addCell(row, formatCount(e.Active), "num");
    addCell(row, formatCount(e.Total), "num");
    addCell(row, formatCount(e.BadConnections), "num");
    addCell(row, rateText(e.in), "num");
    addCell(row, rateText(e.out), "num");
    addBar(row, total ? ((e.in ?? 0) + (e.out ?? 0)) / total : 0);
  }, "no endpoints");
  charts.endpoints.push(t, Object.fromEntries(rows.map((e) => [e.Name, e.in === null ? null : e.in + e.out])));
}

// The shards' families of /metrics, by shard: {connections, received, sent, cpu}.
function shardsOf(metrics) {
  const names = {
    ironsight_shard_connections: "connections",
    ironsight_shard_messages_received_total: "received",
    ironsight_shard_messages_sent_total: "sent",
    ironsight_shard_cpu_seconds_total: "cpu",
  };
  const shards = new Map();
  for (const line of metrics.split("\n")) {
    const match = /^(ironsight_shard_\w+)\{shard="(\d+)"\} (\S+)$/.exec(line);
    if (!match || !(match[1] in names)) continue;
    const shard = Number(match[2]);
    if (!shards.has(shard)) shards.set(shard, {});
    shards.get(shard)[names[match[1]]] = Number(match[3]);
  }
  return [...shards].sort((a, b) => a[0] - b[0]);
}

function drawShards(metrics, t) {
  const rows = shardsOf(metrics).map(([shard, s]) => ({
    shard,
    connections: s.connections ?? 0,
    in: rates.rate(`shard-in ${shard}`, t, s.received ?? 0),
    out: rates.rate(`shard-out ${shard}`, t, s.sent ?? 0),
    // CPU seconds per second, as a percentage of one core.
    cpu: s.cpu === undefined ? null : rates.rate(`shard-cpu ${shard}`, t, s.cpu * 100),
  }));
  fillTable("shards", rows, (row, s) => {
    addCell(row, String(s.shard));
    addCell(row, formatCount(s.connections), "num");
    addCell(row, rateText(s.in), "num");
    addCell(row, rateText(s.out), "num");
    addCell(row, s.cpu === null ? "…" : formatPercent(s.cpu), "num");
    addBar(row, (s.cpu ?? 0) / 100);
  }, "no shards");
  charts.shards.push(t, Object.fromEntries(rows.map((s) => [`shard ${s.shard}`, s.in === null ? null : s.in + s.out])));
  charts.cpu.push(t, Object.fromEntries(rows.map((s) => [`shard ${s.shard}`, s.cpu])));
}

function drawSubscriptions(subscriptions) {
  fillTable("top-subscriptions", subscriptions.Subscription, (row, s) => {
    addCell(row, s.TopicString);
    addCell(row, s.ClientID);
    addCell(row, [s.IsShared ? `shared (${s.SubName})` : "", s.IsDurable ? "durable" : "non-durable"].filter(Boolean).join(", "));
    addCell(row, formatCount(s.BufferedMsgs), "num");
    addBar(row, s.BufferedPercent / 100);
  }, "no subscriptions");
}

function drawConnections(connections) {
  const list = connections.Connection;
  setText("connections-note", [
    list.length === CONNECTIONS_LISTED ? `the newest ${CONNECTIONS_LISTED}` : "",
    sessions >= LARGE_SESSIONS ? `read every ${SLOW_EVERY_POLLS} s (${formatCount(sessions)} sessions)` : "",
  ].filter(Boolean).join(", "));
  const shown = new Map();
  fillTable("connection-list", list, (row, c) => {
    row.dataset.clientId = c.Name;
    addCell(row, c.Name);
    addCell(row, c.UserId);
    addCell(row, `${c.ClientAddr}:${c.Port}`);
    addCell(row, c.Endpoint);
    addCell(row, c.Protocol);
    addCell(row, formatDuration(c.Duration), "num");
    addCell(row, formatCount(c.ReadMsg), "num");
    addCell(row, formatCount(c.WriteMsg), "num");
    const key = `${c.Name} ${c.ClientAddr}`;
    const button = closeButtons.get(key) ?? closeButton(c.Name, c.ClientAddr);
    shown.set(key, button);
    row.insertCell().append(button);
  }, "no connections");
  closeButtons = shown;
}

function closeButton(clientId, address) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "danger close";
  button.textContent = "Close";
  // The API closes by patterns: a client id with `*` or `,` would name more than itself.
  const exact = clientId !== "" && !/[*,]/.test(clientId);
  button.disabled = !exact;
  button.title = exact
    ? `Close ${clientId}'s connection`
    : "This client id is a pattern to the API: close it with POST /ima/v1/service/close/connection";
  button.addEventListener("click", () => closeConnection(clientId, address));
  return button;
}

async function closeConnection(clientId, address) {
  if (!window.confirm(`Close the connection of client "${clientId}" (${address})?`)) return;
  const mine = generation;
  try {
    const answer = await call("POST", "/ima/v1/service/close/connection",
      { body: { ClientID: clientId, ClientAddress: address } });
    if (mine === generation) setText("action-message", `${clientId}: ${answer.Message}`);
  } catch (e) {
    if (mine === generation) setText("action-message", `${clientId} was not closed: ${e.message}`);
  }
}

// A configuration value as the file writes it: lists joined with commas.
const valueText = (value) => (Array.isArray(value) ? value.join(",") : String(value));

function drawConfiguration(configuration) {
  const endpoints = Object.entries(configuration.Endpoint ?? {}).sort((a, b) => a[0].localeCompare(b[0]));
  fillTable("configured-endpoints", endpoints, (row, [name, e]) => {
    addCell(row, name).title = e.Description ?? "";
    addCell(row, valueText(e.Port));
    addCell(row, valueText(e.Interface));
    addCell(row, e.Enabled ? "yes" : "no");
    addCell(row, valueText(e.Protocol ?? ""));
    addCell(row, valueText(e.SecurityProfile ?? ""));
    addCell(row, ["ConnectionPolicies", "TopicPolicies", "SubscriptionPolicies"]
      .filter((key) => e[key] && valueText(e[key]))
      .map((key) => `${key}: ${valueText(e[key])}`).join("; "));
  }, "no endpoints");
  const policies = POLICY_TYPES.flatMap((type) => Object.entries(configuration[type] ?? {})
    .sort((a, b) => a[0].localeCompare(b[0]))
    .map(([name, attributes]) => [type, name, attributes]));
  fillTable("policies", policies, (row, [type, name, attributes]) => {
    addCell(row, type);
    addCell(row, name).title = attributes.Description ?? "";
    addCell(row, Object.entries(attributes)
      .filter(([key, value]) => key !== "Description" && value !== null && valueText(value) !== "")
      .map(([key, value]) => `${key}=${valueText(value)}`).join("  "));
  }, "no policies");
}

function drawStatus(status) {
  const s = status.Server;
  setText("server", `${s.Name} · ${s.Version} · up ${formatDuration(s.UpTimeSeconds)} · ${s.Shards} shards`);
}

// --- polling ------------------------------------------------------------------------------

async function poll(mine) {
  const started = performance.now();
  const filter = byId("connection-filter").value.trim();
  const paths = {
    Server: "/ima/v1/monitor/Server",
    Memory: "/ima/v1/monitor/Memory",
    Endpoint: `/ima/v1/monitor/Endpoint?ResultCount=${CONNECTIONS_LISTED}`,
    metrics: "/metrics",
  };
  const slow = polls % SLOW_EVERY_POLLS === 0;
  if (slow || sessions < LARGE_SESSIONS) {
    paths.Subscription = `/ima/v1/monitor/Subscription?StatType=BufferedMsgsHighest&ResultCount=${TOP_SUBSCRIPTIONS}`;
    paths.Connection = `/ima/v1/monitor/Connection?ResultCount=${CONNECTIONS_LISTED}`
      + (filter ? `&ClientID=${encodeURIComponent(filter)}` : "");
  }
  if (slow) {
    paths.status = "/ima/v1/service/status";
    paths.configuration = "/ima/v1/configuration";
  }
  const names = Object.keys(paths);
  const settled = await Promise.allSettled(names.map((name) => call("GET", paths[name])));
  if (mine !== generation) return;
  const answers = { got: {}, errors: {} };
  settled.forEach((s, i) => {
    if (s.status === "fulfilled") answers.got[names[i]] = s.value;
    else answers.errors[names[i]] = s.reason;
  });
  const unauthorized = Object.values(answers.errors).find((e) => e.status === 401);
  if (unauthorized) {
    logOut(`Logged out: ${unauthorized.message}`);
    return;
  }
  const t = Date.now();
  try {
    section("server-error", answers, "Server", (a) => drawServer(a, t));
    section("memory-error", answers, "Memory", (a) => drawMemory(a, t));
    section("status-error", answers, "status", drawStatus);
    section("endpoints-error", answers, "Endpoint", (a) => drawEndpoints(a, t));
    section("shards-error", answers, "metrics", (a) => drawShards(a, t));
    section("subscriptions-error", answers, "Subscription", drawSubscriptions);
    section("connections-error", answers, "Connection", drawConnections);
    section("configuration-error", answers, "configuration", drawConfiguration);
    rates.prune(t);
    for (const chart of Object.values(charts)) chart.draw(t);
    setText("updated", `updated ${new Date(t).toLocaleTimeString()}`);
  } finally {
    polls += 1;
    // Hidden tabs are polled too (the browser slows their timers): the charts stay whole.
    timer = setTimeout(() => poll(mine), Math.max(0, POLL_MS - (performance.now() - started)));
  }
}

function start(user) {
  generation += 1;
  polls = 0;
  sessions = 0;
  rates = new Rates();
  byId("login").hidden = true;
  byId("dashboard").hidden = false;
  byId("logout").hidden = false;
  setText("who", user);
  poll(generation);
}

// Forgets the credentials and everything shown with them.
function logOut(message) {
  generation += 1;
  clearTimeout(timer);
  sessionStorage.removeItem(AUTHORIZATION);
  sessionStorage.removeItem(USER);
  for (const id of ["server", "updated", "who", "action-message", "connections-note"]) setText(id, "");
  for (const element of document.querySelectorAll("#dashboard .value, #dashboard .error")) element.textContent = "";
  for (const body of document.querySelectorAll("#dashboard tbody")) body.replaceChildren();
  closeButtons = new Map();
  for (const chart of Object.values(charts)) chart.clear();
  byId("dashboard").hidden = true;
  byId("logout").hidden = true;
  byId("login").hidden = false;
  setText("login-error", message);
}

async function logIn(event) {
  event.preventDefault();
  const user = byId("user").value;
  const authorization = basic(user, byId("password").value);
  byId("password").value = "";
  setText("login-error", "");
  byId("login-button").disabled = true;
  try {
    // Any Monitor call proves the credentials and that they may see something.
    await call("GET", "/ima/v1/service/status", { authorization });
  } catch (e) {
    setText("login-error", e.message);
    return;
  } finally {
    byId("login-button").disabled = false;
  }
  sessionStorage.setItem(AUTHORIZATION, authorization);
  sessionStorage.setItem(USER, user);
  start(user);
}

byId("login-form").addEventListener("submit", logIn);
byId("logout").addEventListener("click", () => logOut(""));
window.addEventListener("resize", () => {
  for (const chart of Object.values(charts)) chart.draw(Date.now());
});
if (sessionStorage.getItem(AUTHORIZATION)) start(sessionStorage.getItem(USER) ?? "");
