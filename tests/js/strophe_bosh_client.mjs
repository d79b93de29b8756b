// A client the test suite drives: strophe.js over BOSH (XEP-0124, XEP-0206), controlled
// through JSON lines (tests/client/test_bosh_clients.py).
//
//   node strophe_bosh_client.mjs SERVICE JID PASSWORD RESOURCE
//
// SERVICE is the BOSH URL (http://host:port/http-bind), JID the bare JID. Each argument
// may instead come from the environment: XMPP_SERVICE, XMPP_JID, XMPP_PASSWORD,
// XMPP_RESOURCE. Further settings, all optional: XMPP_BOSH_WAIT (the BOSH 'wait' asked
// for, s, default 10), XMPP_DEBUG (1: strophe's debug log on stderr),
// XMPP_OPTIONAL_SESSION (what to do when the server offers session establishment as
// <optional/> (RFC 6121 §E.1, draft-cridland-xmpp-session): "send" the legacy session
// <iq/> after binding anyway, as strophe does, the default; or "skip" it, as clients
// written for RFC 6121 do), and XMPP_TIMEOUT and XMPP_LIFETIME as driver.mjs says (the
// JSON-line I/O, bounded waits and exit this script shares with xmppjs_client.mjs).
//
// Node has no XMLHttpRequest, which strophe's BOSH transport needs: xhr2 provides it
// (keep-alive connections, as a browser's), with responseXML added from the DOM
// strophe's Node build installs. The wrapper around it can make one request fail on
// purpose (`fail`).
//
// Strophe's own stream management runs over WebSocket only; here XEP-0198 is driven by
// hand: <enable/> on command, <r/> answered with the number of stanzas handled, and
// resumption on a new BOSH session (the connection stops before binding, then sends
// <resume/> itself).
//
// stdin, one JSON object a line:
//   {"cmd":"send","to":"...","body":"...","type":"chat","id":"..."}  a message
//   {"cmd":"presence","to":"...","type":"..."}   presence (both optional)
//   {"cmd":"enable"}   <enable resume='true'/>; done at <enabled/> (or fails at <failed/>)
//   {"cmd":"drop"}     abandon the BOSH session: every pending request is aborted (its
//                      TCP connection closed) and no request follows, no terminate
//   {"cmd":"resume","previd":"...","h":N}   a new BOSH session, authenticated, then
//                      <resume/>; done at <resumed/> or <failed/> (events below)
//   {"cmd":"fail","mode":"cut"|"lose","delay":ms,"notify":ms}   the next request that
//                      carries a payload fails once. cut: its TCP connection is closed
//                      `delay` ms after it was sent (default 300), and strophe learns of
//                      the network error `notify` ms later (default 0). lose: the server's
//                      response to it is thrown away and strophe sees a network error.
//                      Either way strophe sends the same rid again.
//   {"cmd":"stop"}     a clean logout (terminate body), then exit
// stdout, one JSON object a line:
//   {"event":"online","jid":"..."}               bound
//   {"event":"status","status":"..."}            strophe's connection status
//   {"event":"request","rid":N,"sends":N,"type":...,"children":[{name,xmlns,attrs}]}
//                                                a BOSH request posted (again: sends > 1)
//   {"event":"response","rid":N,"status":N,"type":...,"children":["name", ...]}
//                                                the answer to a request arrived
//   {"event":"message","from":"...","to":"...","type":"...","id":"...","body":"...","delay":false}
//   {"event":"presence","from":"...","type":"..."}
//   {"event":"nonza","name":"...","attrs":{...}}  an urn:xmpp:sm:3 element received
//   {"event":"enabled","id":"...","resume":"...","max":"..."}
//   {"event":"dropped","previd":"...","h":N,"sent":N}   h: stanzas handled since <enabled/>;
//                                                sent: stanzas sent since <enable/>
//   {"event":"resumed","previd":"...","h":"...","jid":"..."}   h as the server said it
//   {"event":"failed","condition":"...","h":...}
//   {"event":"fault","mode":"...","rid":N,"status":N}   the failure `fail` asked for happened
//   {"event":"ok","cmd":"..."}                   a command was carried out
//   {"event":"error","message":"...","condition":...,"name":"...","cmd":"..."}
//   {"event":"exit","code":0}
// Every wait is bounded: by XMPP_TIMEOUT for each step, XMPP_LIFETIME for the whole run.

import NodeXMLHttpRequest from "xhr2";

import {
  bounded,
  emit,
  messageAttrs,
  presenceAttrs,
  serve,
  settings,
  start,
  stepTimeout,
  usage,
} from "./driver.mjs";

const [service, bareJid, password, resource] = settings(
  "XMPP_SERVICE",
  "XMPP_JID",
  "XMPP_PASSWORD",
  "XMPP_RESOURCE",
);
const boshWait = Number(process.env.XMPP_BOSH_WAIT ?? 10);
const debug = process.env.XMPP_DEBUG === "1";
const optionalSession = process.env.XMPP_OPTIONAL_SESSION ?? "send";

const SM = "urn:xmpp:sm:3";
const STANZAS = new Set(["message", "presence", "iq"]);

// stdout carries the events only: strophe logs through console.info and console.debug.
for (const name of ["log", "info", "debug"]) {
  console[name] = (...args) => console.error(...args);
}

if (!service || !bareJid || !password) {
  usage("strophe_bosh_client.mjs SERVICE JID PASSWORD [RESOURCE]");
}

// -- XMLHttpRequest ------------------------------------------------------------------

// The next request with a payload that is to fail: {mode, delay, notify}.
let armed = null;

function hasPayload(data) {
  return typeof data === "string" && !/^<body[^>]*\/>$/.test(data.trim());
}

function ridOf(data) {
  return Number(/\brid=['"](\d+)['"]/.exec(data ?? "")?.[1] ?? NaN);
}

// The part of XMLHttpRequest strophe uses, over xhr2. xhr2 has no responseXML: it is
// parsed here from responseText, by the DOMParser strophe's Node entry point installs
// (@xmldom/xmldom), looked up when a response arrives, after strophe is loaded. A
// failed request looks as a network error does in a browser: readyState 4, status 0,
// no response.
class BoshXMLHttpRequest {
  constructor() {
    this.onreadystatechange = null;
    this.withCredentials = false;
    this._failed = false;
    this._lose = null; // the rid whose answer is to be thrown away
    this._xml = undefined;
    this._rid = null;
    this._inner = new NodeXMLHttpRequest();
    this._inner.onreadystatechange = () => this._changed();
  }

  get readyState() {
    return this._failed ? 4 : this._inner.readyState;
  }

  get status() {
    return this._failed ? 0 : this._inner.status;
  }

  get responseText() {
    return this._failed ? "" : this._inner.responseText;
  }

  get responseXML() {
    if (this._failed || this._inner.readyState !== 4 || !this._inner.responseText) return null;
    if (this._xml === undefined) {
      this._xml = new globalThis.DOMParser().parseFromString(this._inner.responseText, "text/xml");
    }
    return this._xml;
  }

  getAllResponseHeaders() {
    return this._failed ? "" : this._inner.getAllResponseHeaders();
  }

  getResponseHeader(name) {
    return this._failed ? null : this._inner.getResponseHeader(name);
  }

  overrideMimeType(mime) {
    this._inner.overrideMimeType(mime);
  }

  open(...args) {
    this._xml = undefined;
    this._inner.open(...args);
  }

  setRequestHeader(name, value) {
    this._inner.setRequestHeader(name, value);
  }

  send(data) {
    this._rid = ridOf(data);
    this._inner.send(data);
    if (armed && hasPayload(data)) {
      const fault = armed;
      armed = null;
      const rid = this._rid;
      if (fault.mode === "lose") {
        this._lose = rid;
      } else {
        setTimeout(() => this._cut(rid, fault.notify ?? 0), fault.delay ?? 300);
      }
    }
  }

  abort() {
    this._inner.abort();
  }

  _changed() {
    if (this._failed) return;
    if (this._lose !== null && this._inner.readyState === 4) {
      // The server answered; the answer is lost on the way.
      this._failed = true;
      emit("fault", { mode: "lose", rid: this._lose, status: this._inner.status });
    } else if (this._inner.readyState === 4) {
      const body = this.responseXML?.documentElement;
      emit("response", {
        rid: this._rid,
        status: this._inner.status,
        type: body?.getAttribute("type") || null,
        children: body ? childElements(body).map((ch) => ch.localName) : [],
      });
    }
    this.onreadystatechange?.();
  }

  _cut(rid, notify) {
    if (this._failed || this._inner.readyState === 4) {
      emit("error", { message: `request ${rid} was answered before it could be cut` });
      return;
    }
    // xhr2's abort closes the request's connection and reports nothing: strophe learns
    // of the network error `notify` ms later.
    this._failed = true;
    this._inner.onreadystatechange = null;
    this._inner.abort();
    emit("fault", { mode: "cut", rid, status: 0 });
    setTimeout(() => this.onreadystatechange?.(), notify);
  }
}

globalThis.XMLHttpRequest = BoshXMLHttpRequest;

const { Strophe, $build, $msg, $pres } = await import("strophe.js");
Strophe.setLogLevel(debug ? Strophe.LogLevel.DEBUG : Strophe.LogLevel.WARN);
const STATUS = Object.fromEntries(Object.entries(Strophe.Status).map(([k, v]) => [v, k]));

// -- the session ---------------------------------------------------------------------

let conn = null;
let fullJid = null;
// Stream management, counted by hand.
const sm = { id: null, enabled: false, handled: 0, sending: false, sent: 0, resumeH: null };
const seenRids = new Set();
const waiters = new Set(); // {test(kind, data), resolve}

function notify(kind, data) {
  for (const w of [...waiters]) {
    if (w.test(kind, data)) {
      waiters.delete(w);
      w.resolve({ kind, data });
    }
  }
}

function waitFor(test, what) {
  let waiter;
  const done = new Promise((resolve) => {
    waiter = { test, resolve };
    waiters.add(waiter);
  });
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => {
      waiters.delete(waiter);
      reject(new Error(`${what}: not done within ${stepTimeout} ms`));
    }, stepTimeout);
  });
  return Promise.race([done, limit]).finally(() => clearTimeout(timer));
}

function attrsOf(el) {
  const out = {};
  for (let i = 0; i < (el.attributes?.length ?? 0); i++) {
    const a = el.attributes[i];
    out[a.name] = a.value;
  }
  return out;
}

function childElements(el) {
  const out = [];
  for (let node = el.firstChild; node; node = node.nextSibling) {
    if (node.nodeType === 1) out.push(node);
  }
  return out;
}

// Elements strophe builds carry their namespace as an xmlns attribute only.
function nsOf(el) {
  return el.namespaceURI || el.getAttribute?.("xmlns") || null;
}

function textOf(el, name) {
  const child = childElements(el).find((c) => c.localName === name);
  return child ? child.textContent : null;
}

function newConnection(explicitResourceBinding) {
  const c = new Strophe.Connection(service, { explicitResourceBinding });
  if (optionalSession === "skip") {
    // Strophe sends the session <iq/> whenever <session/> is offered; an <optional/>
    // one is skipped here instead.
    const afterSasl = c._onStreamFeaturesAfterSASL;
    c._onStreamFeaturesAfterSASL = function (features) {
      const session = childElements(features).find((ch) => ch.localName === "session");
      const optional = session && childElements(session).some((ch) => ch.localName === "optional");
      const result = afterSasl.call(this, features);
      if (optional) this.do_session = false; // read when the bind result arrives
      return result;
    };
  }
  // Every posted body, resends included. Stanzas sent count for stream management
  // once per rid, from the <enable/> on.
  c.xmlOutput = (body) => {
    if (body?.nodeName !== "body") return;
    const rid = Number(body.getAttribute("rid"));
    const children = childElements(body);
    const first = !seenRids.has(rid);
    seenRids.add(rid);
    if (first) {
      for (const child of children) {
        if (child.localName === "enable" && nsOf(child) === SM) {
          sm.sending = true;
          sm.sent = 0;
        } else if (sm.sending && STANZAS.has(child.localName)) {
          sm.sent += 1;
        }
      }
    }
    emit("request", {
      rid,
      sends: c._proto._requests.find((r) => r.rid === rid)?.sends ?? null,
      type: body.getAttribute("type"),
      children: children.map((ch) => ({
        name: ch.localName,
        xmlns: nsOf(ch),
        attrs: attrsOf(ch),
      })),
    });
  };
  // System handlers (they run before authentication too), once per element received,
  // in order.
  c._addSysHandler(
    (el) => {
      const name = el.localName;
      if (STANZAS.has(name)) {
        if (sm.enabled) sm.handled += 1;
      } else if (nsOf(el) === SM) {
        const attrs = attrsOf(el);
        emit("nonza", { name, attrs });
        if (name === "enabled") {
          sm.enabled = true;
          sm.handled = 0;
          sm.id = attrs.id ?? null;
          emit("enabled", { id: sm.id, resume: attrs.resume ?? null, max: attrs.max ?? null });
        } else if (name === "resumed") {
          // As strophe does after its own resumption: the session is the old one, and
          // the stanzas after <resumed/> (in this same body, maybe) are for the user's
          // handlers.
          c.authenticated = true;
          c.jid = fullJid;
          sm.enabled = true;
          sm.handled = sm.resumeH;
          emit("resumed", { previd: attrs.previd ?? null, h: attrs.h ?? null, jid: fullJid });
        } else if (name === "failed") {
          const condition = childElements(el)[0]?.localName ?? null;
          emit("failed", { h: attrs.h ?? null, condition });
        } else if (name === "r") {
          c.send($build("a", { xmlns: SM, h: String(sm.handled) }));
        }
        notify(name, attrs);
      }
      return true;
    },
    null,
    null,
    null,
    null,
  );
  c.addHandler(
    (el) => {
      const body = textOf(el, "body");
      if (body !== null) {
        const delay = childElements(el).some(
          (ch) => ch.localName === "delay" && nsOf(ch) === "urn:xmpp:delay",
        );
        emit("message", {
          from: el.getAttribute("from"),
          to: el.getAttribute("to"),
          type: el.getAttribute("type"),
          id: el.getAttribute("id"),
          body,
          delay,
        });
      }
      return true;
    },
    null,
    "message",
  );
  c.addHandler(
    (el) => {
      emit("presence", { from: el.getAttribute("from"), type: el.getAttribute("type") });
      return true;
    },
    null,
    "presence",
  );
  return c;
}

function connect(c) {
  return new Promise((resolve, reject) => {
    c.connect(
      `${bareJid}/${resource ?? "strophe"}`,
      password,
      (status, condition) => {
        emit("status", { status: STATUS[status] ?? String(status), condition: condition ?? null });
        notify("status", { status, condition });
        if (status === Strophe.Status.CONNECTED || status === Strophe.Status.BINDREQUIRED) {
          resolve(status);
        } else if (
          status === Strophe.Status.CONNFAIL ||
          status === Strophe.Status.AUTHFAIL ||
          status === Strophe.Status.DISCONNECTED
        ) {
          reject(new Error(`connection failed: ${STATUS[status]} ${condition ?? ""}`));
        }
      },
      boshWait,
      1,
    );
  });
}

async function stop() {
  if (!conn || !conn.connected) return;
  const gone = waitFor(
    (kind, d) => kind === "status" && d.status === Strophe.Status.DISCONNECTED,
    "stop",
  );
  conn.disconnect();
  await gone;
}

async function run(command) {
  switch (command.cmd) {
    case "send": {
      conn.send($msg(messageAttrs(command)).c("body").t(command.body));
      break;
    }
    case "presence": {
      conn.send($pres(presenceAttrs(command)));
      break;
    }
    case "enable": {
      const answer = waitFor((kind) => kind === "enabled" || kind === "failed", "enable");
      conn.send($build("enable", { xmlns: SM, resume: "true" }));
      const { kind, data } = await answer;
      if (kind !== "enabled") throw new Error(`<enable/> failed: ${JSON.stringify(data)}`);
      break;
    }
    case "drop": {
      if (!conn) throw new Error("no connection to drop");
      const dropped = conn;
      // What strophe does when a disconnect times out, without the status noise: every
      // pending request aborted (its connection closed), the idle loop stopped, the
      // session forgotten. Nothing more reaches the server.
      dropped._proto._abortAllRequests();
      dropped._doDisconnect("dropped");
      emit("dropped", { previd: sm.id, h: sm.handled, sent: sm.sent });
      break;
    }
    case "resume": {
      const c = newConnection(true);
      conn = c;
      const status = await bounded(connect(c), "connect");
      if (status !== Strophe.Status.BINDREQUIRED) {
        throw new Error(`expected BINDREQUIRED, got ${STATUS[status]}`);
      }
      const answer = waitFor((kind) => kind === "resumed" || kind === "failed", "resume");
      sm.enabled = false;
      sm.resumeH = Number(command.h);
      c.send($build("resume", { xmlns: SM, previd: command.previd, h: String(command.h) }));
      await answer; // the events are emitted as the answer arrives
      break;
    }
    case "fail": {
      if (!["cut", "lose"].includes(command.mode)) throw new Error(`unknown mode ${command.mode}`);
      armed = { mode: command.mode, delay: command.delay, notify: command.notify };
      break;
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
  }
}

// stop, and the end of stdin: a terminate body, if that is quick.
serve(run, stop);
await start(async () => {
  conn = newConnection(false);
  await bounded(connect(conn), "connect");
  fullJid = conn.jid;
  emit("online", { jid: fullJid });
});
