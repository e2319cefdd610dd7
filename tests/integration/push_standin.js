// Stand-ins for Apple's and Google's push services, for the push gateway's tests and benchmark:
// one HTTPS server (HTTP/2, and HTTP/1.1 for clients that do not offer h2) on node's built-in
// `http2` module, checking every request as the real service would, and answering as told.
//
//   node push_standin.js CONFIG.json
//
// CONFIG: {"cert": PEM file, "key": PEM file,
//          "apns": {"publicKey": PEM file, "keyId", "teamId", "topic"},
//          "fcm": {"publicKey": PEM file, "clientEmail", "project", "tokenUri"},
//          "port": 0, "quiet": false}   (quiet: print only requests with errors)
//
// Routes (as the services have them):
//   POST /3/device/<token>                       APNs: HTTP/2 only; apns-topic, apns-push-type,
//                                                apns-priority; bearer ES256 JWT (kid, iss, iat)
//   POST /token                                  Google's OAuth token endpoint: an RS256 JWT
//                                                assertion (grant_type jwt-bearer) -> access token
//   POST /v1/projects/<project>/messages:send    FCM HTTP v1: a bearer token /token issued
//   POST /webhook                                any JSON
//
// It prints "listening PORT" first, then one JSON line per request:
//   {"service","token","status","http","time","headers","body","errors":[...]}
// where `errors` lists every way the request differs from what the real service accepts (a
// test asserts it is empty). On standard input it takes JSON lines of answers to give:
//   {"answers": {"<token>": [429, {"status": 503, "retryAfter": 1}, 410, ...]}}
// each used once, in order, for requests to that token (then 200). {"reset": true} forgets
// issued access tokens, so the gateway is told 401 on its next push. {"report": true} prints
//   {"service":"report","counts":{"apns":N,...},"errors":N}: requests so far (quiet mode too).
"use strict";

const fs = require("fs");
const http2 = require("http2");
const crypto = require("crypto");
const readline = require("readline");

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const apnsKey = config.apns && crypto.createPublicKey(fs.readFileSync(config.apns.publicKey));
const fcmKey = config.fcm && crypto.createPublicKey(fs.readFileSync(config.fcm.publicKey));
const BODY_BYTES_MAX = 1024 * 1024;

const answers = new Map(); // token -> [answer, ...]
let issued = new Set(); // access tokens handed out
let issuedCount = 0;

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  for (const [token, list] of Object.entries(command.answers || {})) {
    answers.set(token, (answers.get(token) || []).concat(list));
  }
  if (command.reset) issued = new Set();
  if (command.report) {
    process.stdout.write(JSON.stringify({ service: "report", counts, errors: errorCount }) + "\n");
  }
});
const counts = {}; // service -> requests answered
let errorCount = 0;

function b64url(text) {
  return Buffer.from(text, "base64url");
}

// The JWT's header and claims if its signature verifies with `key` under `alg`, else errors.
function verifyJwt(token, key, alg, errors) {
  const parts = (token || "").split(".");
  if (parts.length !== 3) {
    errors.push("not a compact JWT");
    return null;
  }
  let header, claims;
  try {
    header = JSON.parse(b64url(parts[0]).toString());
    claims = JSON.parse(b64url(parts[1]).toString());
  } catch (e) {
    errors.push("JWT header or claims are not JSON");
    return null;
  }
  if (header.alg !== alg) errors.push(`alg ${header.alg}, expected ${alg}`);
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  const signature = b64url(parts[2]);
  const ok = alg === "ES256"
    ? signature.length === 64 &&
      crypto.verify("sha256", signed, { key, dsaEncoding: "ieee-p1363" }, signature)
    : crypto.verify("sha256", signed, key, signature);
  if (!ok) errors.push("JWT signature does not verify");
  return { header, claims };
}

function nextAnswer(token) {
  const list = answers.get(token);
  if (!list || list.length === 0) return { status: 200 };
  const a = list.shift();
  return typeof a === "number" ? { status: a } : a;
}

function apns(req, headers, body, token, errors) {
  if (req.httpVersion !== "2.0") errors.push(`HTTP/${req.httpVersion}: APNs speaks only HTTP/2`);
  const c = config.apns;
  if (headers["apns-topic"] !== c.topic) errors.push(`apns-topic ${headers["apns-topic"]}`);
  if (headers["apns-push-type"] !== "alert") errors.push(`apns-push-type ${headers["apns-push-type"]}`);
  if (!["5", "10", undefined].includes(headers["apns-priority"])) errors.push(`apns-priority ${headers["apns-priority"]}`);
  if (!/^[0-9a-fA-F]+$/.test(token)) errors.push("the device token is not hexadecimal");
  const auth = headers.authorization || "";
  if (!auth.startsWith("bearer ")) errors.push("no bearer authorization");
  const jwt = verifyJwt(auth.slice(7), apnsKey, "ES256", errors);
  if (jwt) {
    if (jwt.header.kid !== c.keyId) errors.push(`kid ${jwt.header.kid}`);
    if (jwt.claims.iss !== c.teamId) errors.push(`iss ${jwt.claims.iss}`);
    const age = Date.now() / 1000 - jwt.claims.iat;
    if (!(age > -60 && age < 3600)) errors.push(`iat ${jwt.claims.iat} is not within the hour`);
  }
  if (!body || typeof body.aps !== "object" || body.aps.alert === undefined) errors.push("no aps.alert");
  if (Buffer.byteLength(JSON.stringify(body)) > 4096) errors.push("payload over 4 KB");
  const a = nextAnswer(token);
  const reasons = { 400: "BadDeviceToken", 403: "ExpiredProviderToken", 410: "Unregistered",
    429: "TooManyProviderTokenUpdates", 500: "InternalServerError", 503: "ServiceUnavailable" };
  if (errors.length) return { status: 400, body: { reason: "BadRequest" } };
  return { ...a, body: a.status === 200 ? undefined : { reason: a.reason || reasons[a.status] || "Error" } };
}

function oauth(headers, raw, errors) {
  const c = config.fcm;
  const form = new URLSearchParams(raw);
  if (!(headers["content-type"] || "").startsWith("application/x-www-form-urlencoded")) errors.push("not a form");
  if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer") errors.push(`grant_type ${form.get("grant_type")}`);
  const jwt = verifyJwt(form.get("assertion"), fcmKey, "RS256", errors);
  if (jwt) {
    const now = Date.now() / 1000;
    if (jwt.claims.iss !== c.clientEmail) errors.push(`iss ${jwt.claims.iss}`);
    if (jwt.claims.aud !== c.tokenUri) errors.push(`aud ${jwt.claims.aud}`);
    if (jwt.claims.scope !== "https://www.googleapis.com/auth/firebase.messaging") errors.push(`scope ${jwt.claims.scope}`);
    if (!(jwt.claims.exp > now && jwt.claims.exp - jwt.claims.iat <= 3600)) errors.push("exp is not within the hour");
  }
  if (errors.length) return { status: 400, body: { error: "invalid_grant" } };
  const token = `ya29.standin-${++issuedCount}`;
  issued.add(token);
  return { status: 200, body: { access_token: token, expires_in: 3599, token_type: "Bearer" } };
}

function fcm(headers, body, project, errors) {
  const auth = headers.authorization || "";
  if (project !== config.fcm.project) errors.push(`project ${project}`);
  if (!auth.startsWith("Bearer ")) errors.push("no Bearer authorization");
  if (!issued.has(auth.slice(7))) {
    return { status: 401, body: { error: { code: 401, status: "UNAUTHENTICATED", message: "Request had invalid authentication credentials." } }, token: null };
  }
  const message = body && body.message;
  const token = message && message.token;
  if (typeof token !== "string") errors.push("no message.token");
  if (!message || !message.notification || typeof message.notification.body !== "string") errors.push("no message.notification.body");
  if (errors.length) return { status: 400, body: { error: { code: 400, status: "INVALID_ARGUMENT", message: errors.join("; ") } }, token };
  const a = nextAnswer(token);
  const errorsBy = {
    400: { code: 400, status: "INVALID_ARGUMENT", message: "The registration token is not a valid FCM registration token",
      details: [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode: "INVALID_ARGUMENT" }] },
    404: { code: 404, status: "NOT_FOUND", message: "Requested entity was not found.",
      details: [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode: "UNREGISTERED" }] },
    429: { code: 429, status: "RESOURCE_EXHAUSTED", message: "Quota exceeded" },
    500: { code: 500, status: "INTERNAL", message: "Internal error" },
    503: { code: 503, status: "UNAVAILABLE", message: "The service is currently unavailable." },
  };
  return a.status === 200
    ? { ...a, body: { name: `projects/${project}/messages/${Date.now()}` }, token }
    : { ...a, body: { error: errorsBy[a.status] || { code: a.status } }, token };
}

function serve(req, res) {
  const chunks = [];
  let size = 0;
  req.on("data", (c) => {
    size += c.length;
    if (size <= BODY_BYTES_MAX) chunks.push(c);
  });
  req.on("end", () => {
    const raw = Buffer.concat(chunks).toString();
    const headers = req.headers;
    const errors = [];
    let body = null;
    if (req.method !== "POST") errors.push(`method ${req.method}`);
    const path = req.url;
    let service, token = null, answer;
    let m;
    if ((m = path.match(/^\/3\/device\/([^/?]+)$/))) {
      service = "apns";
      token = m[1];
      try { body = JSON.parse(raw); } catch (e) { errors.push("body is not JSON"); }
      answer = apns(req, headers, body, token, errors);
    } else if (path === "/token") {
      service = "oauth";
      answer = oauth(headers, raw, errors);
    } else if ((m = path.match(/^\/v1\/projects\/([^/]+)\/messages:send$/))) {
      service = "fcm";
      try { body = JSON.parse(raw); } catch (e) { errors.push("body is not JSON"); }
      answer = fcm(headers, body, m[1], errors);
      token = answer.token;
    } else if (path === "/webhook") {
      service = "webhook";
      try { body = JSON.parse(raw); } catch (e) { errors.push("body is not JSON"); }
      token = body && body.Token;
      answer = nextAnswer(token);
    } else {
      service = "unknown";
      errors.push(`no such path ${path}`);
      answer = { status: 404 };
    }
    const extra = answer.retryAfter !== undefined ? { "retry-after": String(answer.retryAfter) } : {};
    res.writeHead(answer.status, { "content-type": "application/json", ...extra });
    res.end(answer.body === undefined ? "" : JSON.stringify(answer.body));
    counts[service] = (counts[service] || 0) + 1;
    errorCount += errors.length ? 1 : 0;
    if (!config.quiet || errors.length) {
      const shown = {};
      for (const h of ["apns-topic", "apns-push-type", "apns-priority", "content-type"]) {
        if (headers[h] !== undefined) shown[h] = headers[h];
      }
      process.stdout.write(JSON.stringify({ service, token, status: answer.status, http: req.httpVersion, time: Date.now() / 1000,
        headers: shown, body: service === "oauth" ? null : body, errors }) + "\n");
    }
  });
}

const server = http2.createSecureServer({
  cert: fs.readFileSync(config.cert), key: fs.readFileSync(config.key), allowHTTP1: true,
  // The gateway keeps up to 64 pushes in flight on one connection.
  settings: { maxConcurrentStreams: 1000 },
}, serve);
server.listen(config.port || 0, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.stdin.on("end", () => server.close(() => process.exit(0)));
process.on("SIGTERM", () => process.exit(0));
