// A client the test suite drives: @xmpp/client (xmpp.js) over WebSocket, controlled
// through JSON lines (tests/client/test_websocket_clients.py).
//
//   node xmppjs_client.mjs SERVICE DOMAIN USERNAME PASSWORD RESOURCE
//
// Each argument may instead come from the environment: XMPP_SERVICE, XMPP_DOMAIN,
// XMPP_USERNAME, XMPP_PASSWORD, XMPP_RESOURCE. Further settings, all optional:
// XMPP_RECONNECT_DELAY (ms before the library reconnects after a lost connection,
// default 1000), XMPP_TIMEOUT (ms any one step may take, default 15000),
// XMPP_LIFETIME (ms after which the script exits whatever happens, default 120000).
//
// stdin, one JSON object a line:
//   {"cmd":"send","to":"...","body":"...","type":"chat"}  a message
//   {"cmd":"presence","to":"...","type":"..."}            presence (both optional)
//   {"cmd":"drop"}   destroy the TCP socket under the WebSocket: no close frame and no
//                    <close/>, so the server sees a lost transport; the library's
//                    reconnect and stream management plugins take over
//   {"cmd":"stop"}   a clean logout (<close/>, WebSocket close), then exit
// stdout, one JSON object a line:
//   {"event":"online","jid":"..."}     a new session (after binding)
//   {"event":"resumed","jid":"..."}    stream management resumed the old session
//   {"event":"status","status":"..."}  connection status (connecting, open, disconnect, ...)
//   {"event":"message","from":"...","to":"...","type":"...","id":"...","body":"...","delay":false}
//   {"event":"presence","from":"...","type":"..."}
//   {"event":"nonza","name":"...","xmlns":"...","attrs":{...}}  e.g. <enabled/>, <resumed/>
//   {"event":"sent","name":"...","xmlns":"...","attrs":{...},"children":["{ns}name", ...]}
//   {"event":"ok","cmd":"..."}         a command was carried out
//   {"event":"dropped"}                the TCP socket is gone
//   {"event":"error","message":"...","condition":"..."}
//   {"event":"exit","code":0}
// Every wait is bounded: by XMPP_TIMEOUT for each step, XMPP_LIFETIME for the whole run.

import { createInterface } from "node:readline";

import { client, xml } from "@xmpp/client";
import { WebSocket as WS } from "ws";

const [service, domain, username, password, resource] = [
  ["XMPP_SERVICE", 2],
  ["XMPP_DOMAIN", 3],
  ["XMPP_USERNAME", 4],
  ["XMPP_PASSWORD", 5],
  ["XMPP_RESOURCE", 6],
].map(([name, i]) => process.argv[i] ?? process.env[name]);
const reconnectDelay = Number(process.env.XMPP_RECONNECT_DELAY ?? 1000);
const stepTimeout = Number(process.env.XMPP_TIMEOUT ?? 15000);
const lifetime = Number(process.env.XMPP_LIFETIME ?? 120000);

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

function errorFields(err) {
  return {
    message: String(err?.message ?? err),
    condition: err?.condition ?? null,
    name: err?.name ?? null,
  };
}

let exiting = false;
function exit(code) {
  if (exiting) return;
  exiting = true;
  emit("exit", { code });
  // Let stdout drain before the process goes.
  process.stdout.write("", () => process.exit(code));
  setTimeout(() => process.exit(code), 1000).unref();
}

function bounded(promise, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    const fail = () => reject(new Error(`${what}: not done within ${stepTimeout} ms`));
    timer = setTimeout(fail, stepTimeout);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

if (!service || !domain || !username || !password) {
  emit("error", { message: "usage: xmppjs_client.mjs SERVICE DOMAIN USERNAME PASSWORD [RESOURCE]" });
  process.exit(2);
}

// @xmpp/websocket uses the global WebSocket, which Node 20 does not have without
// --experimental-websocket; `ws` stands in (also on Nodes that have one: `drop`
// needs the TCP socket under each connection, which `ws` lets us keep).
let tcpSocket = null;
class TrackedWebSocket extends WS {
  constructor(url, protocols) {
    super(url, protocols);
    this.once("upgrade", (response) => {
      tcpSocket = response.socket;
    });
  }
}
globalThis.WebSocket = TrackedWebSocket;

const xmpp = client({ service, domain, username, password, resource, timeout: stepTimeout });
xmpp.reconnect.delay = reconnectDelay;

xmpp.on("error", (err) => emit("error", errorFields(err)));
xmpp.on("status", (status) => emit("status", { status }));
xmpp.on("online", (address) => emit("online", { jid: address.toString() }));
xmpp.streamManagement.on("resumed", () => emit("resumed", { jid: xmpp.jid?.toString() ?? null }));
xmpp.streamManagement.on("fail", (stanza) => emit("error", { message: `not sent: ${stanza}` }));

xmpp.on("nonza", (el) => {
  emit("nonza", { name: el.name, xmlns: el.attrs.xmlns ?? null, attrs: el.attrs });
});

xmpp.on("send", (el) => {
  const children = el.children
    .filter((c) => typeof c === "object")
    .map((c) => (c.attrs.xmlns ? `{${c.attrs.xmlns}}${c.name}` : c.name));
  emit("sent", { name: el.name, xmlns: el.attrs.xmlns ?? null, attrs: el.attrs, children });
});

xmpp.on("stanza", (stanza) => {
  const { from = null, to = null, type = null, id = null } = stanza.attrs;
  if (stanza.is("message")) {
    const body = stanza.getChildText("body");
    if (body === null) return; // chat states, receipts, ...
    const delay = stanza.getChild("delay", "urn:xmpp:delay") !== undefined;
    emit("message", { from, to, type, id, body, delay });
  } else if (stanza.is("presence")) {
    emit("presence", { from, type });
  }
});

async function run(command) {
  switch (command.cmd) {
    case "send": {
      const attrs = { to: command.to, type: command.type ?? "chat" };
      if (command.id) attrs.id = command.id;
      await bounded(xmpp.send(xml("message", attrs, xml("body", {}, command.body))), "send");
      break;
    }
    case "presence": {
      const attrs = {};
      if (command.to) attrs.to = command.to;
      if (command.type) attrs.type = command.type;
      await bounded(xmpp.send(xml("presence", attrs)), "presence");
      break;
    }
    case "drop": {
      if (!tcpSocket) throw new Error("no connection to drop");
      const socket = tcpSocket;
      tcpSocket = null;
      socket.destroy();
      emit("dropped");
      break;
    }
    case "stop": {
      await bounded(xmpp.stop(), "stop");
      emit("ok", { cmd: "stop" });
      exit(0);
      return;
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
  }
  emit("ok", { cmd: command.cmd });
}

// Commands run one at a time, in order.
let queue = Promise.resolve();
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    let command;
    try {
      command = JSON.parse(line);
      await run(command);
    } catch (err) {
      emit("error", { ...errorFields(err), cmd: command?.cmd ?? null });
    }
  });
});
// The test is gone: leave, closing the stream if that is quick.
lines.on("close", () => {
  queue.then(async () => {
    try {
      await bounded(xmpp.stop(), "stop");
    } catch {}
    exit(0);
  });
});

setTimeout(() => {
  emit("error", { message: `still running after ${lifetime} ms: giving up` });
  exit(3);
}, lifetime).unref();

try {
  await bounded(xmpp.start(), "start");
} catch (err) {
  emit("error", { ...errorFields(err), cmd: "start" });
  exit(1);
}
