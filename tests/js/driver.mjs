// What the clients the test suite drives (strophe_bosh_client.mjs, xmppjs_client.mjs)
// share: their settings, events out and commands in as JSON lines, bounded waits, and
// the way they exit. tests/jsdriver.py is the other end.
//
// Settings from the environment, both optional: XMPP_TIMEOUT (ms any one step may
// take, default 15000), XMPP_LIFETIME (ms after which the script exits whatever
// happens, default 120000).
//
// stdin, one JSON object a line: {"cmd":"...", ...}. Commands run one at a time, in
// order; each ends with {"event":"ok","cmd":"..."} or {"event":"error","cmd":"...",...}.
// {"cmd":"stop"} logs out cleanly and exits, as the end of stdin does.
// stdout, one JSON object a line: {"event":"...", ...}, the last {"event":"exit","code":N}.

import { createInterface } from "node:readline";

export const stepTimeout = Number(process.env.XMPP_TIMEOUT ?? 15000);
export const lifetime = Number(process.env.XMPP_LIFETIME ?? 120000);

// The script's arguments, each from the command line (in this order) or else from the
// environment variable named.
export function settings(...names) {
  return names.map((name, i) => process.argv[i + 2] ?? process.env[name]);
}

export function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

export function errorFields(err) {
  return {
    message: String(err?.message ?? err),
    condition: err?.condition ?? null,
    name: err?.name ?? null,
  };
}

// A required argument is missing: say how to call the script, and leave.
export function usage(text) {
  emit("error", { message: `usage: ${text}` });
  process.exit(2);
}

let exiting = false;
export function exit(code) {
  if (exiting) return;
  exiting = true;
  emit("exit", { code });
  // Let stdout drain before the process goes.
  process.stdout.write("", () => process.exit(code));
  setTimeout(() => process.exit(code), 1000).unref();
}

// `promise`, or a rejection once it has taken longer than XMPP_TIMEOUT.
export function bounded(promise, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    const fail = () => reject(new Error(`${what}: not done within ${stepTimeout} ms`));
    timer = setTimeout(fail, stepTimeout);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

// Reads the commands on stdin and carries them out: `run(command)` every one but
// "stop", which is `stop()` (a clean logout, itself bounded) and then exit. At the end of
// stdin (the test is gone) the script leaves, logging out if that is quick; after
// XMPP_LIFETIME it gives up.
export function serve(run, stop) {
  let queue = Promise.resolve();
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    if (!line.trim()) return;
    queue = queue.then(async () => {
      let command;
      try {
        command = JSON.parse(line);
        if (command.cmd === "stop") {
          await stop();
          emit("ok", { cmd: "stop" });
          exit(0);
          return;
        }
        await run(command);
        emit("ok", { cmd: command.cmd });
      } catch (err) {
        emit("error", { ...errorFields(err), cmd: command?.cmd ?? null });
      }
    });
  });
  lines.on("close", () => {
    queue.then(async () => {
      try {
        await stop();
      } catch {}
      exit(0);
    });
  });

  setTimeout(() => {
    emit("error", { message: `still running after ${lifetime} ms: giving up` });
    exit(3);
  }, lifetime).unref();
}

// Logs in with `begin()`; if that fails, says so and exits.
export async function start(begin) {
  try {
    await begin();
  } catch (err) {
    emit("error", { ...errorFields(err), cmd: "start" });
    exit(1);
  }
}

// A message command's attributes: to, type (chat unless given), id (if given).
export function messageAttrs(command) {
  const attrs = { to: command.to, type: command.type ?? "chat" };
  if (command.id) attrs.id = command.id;
  return attrs;
}

// A presence command's attributes: to and type, each if given.
export function presenceAttrs(command) {
  const attrs = {};
  if (command.to) attrs.to = command.to;
  if (command.type) attrs.type = command.type;
  return attrs;
}
