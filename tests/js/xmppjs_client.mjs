// A client the test suite drives: @xmpp/client (xmpp.js) over WebSocket, controlled
// through JSON lines (tests/client/test_websocket_clients.py).
//
//   node xmppjs_client.mjs SERVICE DOMAIN USERNAME PASSWORD RESOURCE
//
// Each argument may instead come from the environment: XMPP_SERVICE, XMPP_DOMAIN,
// XMPP_USERNAME, XMPP_PASSWORD, XMPP_RESOURCE. Further settings, all optional:
// XMPP_RECONNECT_DELAY (ms before the library reconnects after a lost connection,
// default 1000), and XMPP_TIMEOUT and XMPP_LIFETIME as driver.mjs says (the JSON-line
// I/O, bounded waits and exit this script shares with strophe_bosh_client.mjs).
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

import { client, xml } from "@xmpp/client";
import { WebSocket as WS } from "ws";

import {
  bounded,
  emit,
  errorFields,
  messageAttrs,
  presenceAttrs,
  serve,
  settings,
  start,
  stepTimeout,
  usage,
} from "./driver.mjs";

const [service, domain, username, password, resource] = settings(
  "XMPP_SERVICE",
  "XMPP_DOMAIN",
  "XMPP_USERNAME",
  "XMPP_PASSWORD",
  "XMPP_RESOURCE",
);
const reconnectDelay = Number(process.env.XMPP_RECONNECT_DELAY ?? 1000);

if (!service || !domain || !username || !password) {
  usage("xmppjs_client.mjs SERVICE DOMAIN USERNAME PASSWORD [RESOURCE]");
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
      const message = xml("message", messageAttrs(command), xml("body", {}, command.body));
      await bounded(xmpp.send(message), "send");
      break;
    }
    case "presence": {
      await bounded(xmpp.send(xml("presence", presenceAttrs(command))), "presence");
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
    default:
      throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
  }
}

// stop, and the end of stdin: <close/>, if that is quick.
serve(run, () => bounded(xmpp.stop(), "stop"));
await start(() => bounded(xmpp.start(), "start"));
