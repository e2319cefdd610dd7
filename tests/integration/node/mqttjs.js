// MQTT.js (the npm package `mqtt`) as the black-box tests drive it: connect over ws:// or
// wss://, subscribe, and either publish to itself (a round trip) or wait for messages from
// others. Every step is printed as one JSON line on stdout, so that the Python test can wait
// for "subscribed" before it publishes; the exit status is 0 when every expected message came.
//
//   node mqttjs.js URL --id ID --version 4|5 --topic T [--ca FILE] [--publish PAYLOAD]
//                  [--count N] [--timeout-ms MS]
//
// --publish: publish PAYLOAD at QoS 1 to the topic after the SUBACK (a round trip).
// --count: how many messages to wait for (default 1); then it disconnects (DISCONNECT, then
// the WebSocket close). An error during that goodbye is printed as "error-after-done" and the
// exit status stays 0: the messages came.
'use strict';

const fs = require('fs');
const mqtt = require('mqtt');

function parse(argv) {
  const opts = { url: argv[0], count: 1, timeoutMs: 10000, version: 4 };
  for (let i = 1; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    switch (name) {
      case '--id': opts.id = value; break;
      case '--version': opts.version = Number(value); break;
      case '--topic': opts.topic = value; break;
      case '--ca': opts.ca = value; break;
      case '--publish': opts.publish = value; break;
      case '--count': opts.count = Number(value); break;
      case '--timeout-ms': opts.timeoutMs = Number(value); break;
      default: throw new Error(`unknown option ${name}`);
    }
  }
  if (!opts.url || !opts.id || !opts.topic) throw new Error('URL, --id and --topic are required');
  return opts;
}

function say(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

const opts = parse(process.argv.slice(2));
const client = mqtt.connect(opts.url, {
  clientId: opts.id,
  protocolVersion: opts.version,
  clean: true,
  reconnectPeriod: 0, // a dropped connection stays dropped: the test sees what the broker did
  connectTimeout: opts.timeoutMs,
  ca: opts.ca ? fs.readFileSync(opts.ca) : undefined,
  rejectUnauthorized: true,
});

let received = 0;
let done = false; // every expected message came; what follows is the goodbye
const timer = setTimeout(() => {
  say('timeout', { received });
  client.end(true, () => process.exit(1));
}, opts.timeoutMs);

client.on('error', (err) => {
  const message = String(err && err.message);
  if (done) {
    // An error while saying goodbye (after DISCONNECT) does not undo the messages; it is
    // reported for the test to judge.
    say('error-after-done', { message });
    process.exit(0);
  }
  say('error', { message });
  clearTimeout(timer);
  client.end(true, () => process.exit(1));
});

client.on('connect', (connack) => {
  say('connected', { reason: connack.returnCode ?? connack.reasonCode ?? 0 });
  client.subscribe(opts.topic, { qos: 1 }, (err, granted) => {
    if (err) {
      say('error', { message: String(err.message) });
      process.exit(1);
    }
    say('subscribed', { granted: granted.map((g) => g.qos) });
    if (opts.publish !== undefined) {
      client.publish(opts.topic, opts.publish, { qos: 1 }, (perr) => {
        if (perr) say('error', { message: String(perr.message) });
        else say('published');
      });
    }
  });
});

client.on('message', (topic, payload, packet) => {
  received += 1;
  say('message', { topic, payload: payload.toString(), qos: packet.qos });
  if (received >= opts.count && !done) {
    done = true;
    clearTimeout(timer);
    client.end(false, () => {
      say('closed');
      process.exit(0);
    });
  }
});
