// Starts the bundled Converse.js with the settings the server wrote into the page
// (src/descant/http/webclient/__init__.py): a script file, not inline code, so that the
// page's Content-Security-Policy can forbid inline scripts.
const settings = JSON.parse(document.getElementById("descant-converse-settings").textContent);
const converse = window.converse;
let version = "";

// Converse's footer on the full-screen login page shows its sponsors' logos, fetched from
// conversejs.org; this page loads nothing from other hosts, so a plain footer replaces it:
// the version, and where its licence and source are.
class Footer extends HTMLElement {
  connectedCallback() {
    if (this.childElementCount) return;
    const p = document.createElement("p");
    p.className = "brand-subtitle subdued text-center py-3";
    const link = (href, text) => {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      a.rel = "noopener";
      a.target = "_blank";
      return a;
    };
    p.append(
      `Converse.js ${version} · `,
      link(`${settings.assets_path}/LICENSE`, "MPL-2.0"),
      " · ",
      link("https://github.com/conversejs/converse.js", "source"),
    );
    this.append(p);
  }
}

converse.plugins.add("descant", {
  initialize() {
    version = this._converse.VERSION_NAME;
    this._converse.api.elements.define("converse-footer", Footer);
  },
});
// Whether the WebSocket endpoint answers: open a connection and close it at once.
function websocketAnswers(url, ms) {
  return new Promise((resolve) => {
    let ws;
    try {
      ws = new WebSocket(url, "xmpp");
    } catch {
      resolve(false);
      return;
    }
    const done = (ok) => {
      clearTimeout(timer);
      ws.onopen = ws.onerror = ws.onclose = null;
      ws.close();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    ws.onopen = () => done(true);
    ws.onerror = ws.onclose = () => done(false);
  });
}

// COMPAT: Converse.js 14.0.0 does not switch to BOSH when the WebSocket endpoint cannot be
// reached (its reconnect loop keeps trying the WebSocket, since the status it checks is
// DISCONNECTED by then, not CONNFAIL). So the page tries the endpoint first and, when it
// does not answer (a proxy that passes no upgrades, a firewall), leaves it out: Converse
// then connects over BOSH.
if (settings.websocket_url && settings.bosh_service_url) {
  if (!(await websocketAnswers(settings.websocket_url, 5000))) {
    console.warn(`${settings.websocket_url} does not answer; using BOSH`);
    delete settings.websocket_url;
  }
}
converse.initialize({ ...settings, whitelisted_plugins: ["descant"] });
