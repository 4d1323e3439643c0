// The backstate dashboard: machines, versions and their diagrams, instances (live over
// /rt, with time travel through their history), dead letters. It speaks only the public
// HTTP API with a bearer token, signed here from a key (WebCrypto HMAC, as
// @statebacked/token does) or given as is; the key stays in this tab's sessionStorage.
// Every text that comes from the server is set with textContent, never parsed as HTML;
// the one markup inserted is the SVG that mermaid (securityLevel strict) draws from
// labels the server wrote as mermaid entities.
"use strict";

(() => {
  const AUDIENCE = "https://api.statebacked.dev/";
  const AUTH_KEY = "backstate.auth";
  const main = document.getElementById("main");
  let cleanups = [];

  // -- DOM ------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const json = (value) => JSON.stringify(value, null, 2);
  const link = (href, text) => el("a", { href }, text);
  const machineHref = (m) => `#/m/${encodeURIComponent(m)}`;
  const instanceHref = (m, i) => `${machineHref(m)}/i/${encodeURIComponent(i)}`;
  const path = (...parts) => parts.map(encodeURIComponent).join("/");

  function showError(where, error) {
    const text = error && error.code ? `${error.message} (${error.code})` : String(error);
    where.replaceChildren(el("p", { class: "error", role: "alert" }, text));
  }

  // -- authentication -------------------------------------------------------------------

  function credentials() {
    try {
      return JSON.parse(sessionStorage.getItem(AUTH_KEY) || "null");
    } catch {
      return null;
    }
  }

  function b64url(bytes) {
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function signToken(keyId, secret, act) {
    const encode = (value) => new TextEncoder().encode(value);
    const iat = Math.floor(Date.now() / 1000);
    const header = { alg: "HS256", kid: keyId };
    const payload = {
      act, aud: AUDIENCE, exp: iat + 600, iss: `https://${keyId}.client.statebacked.dev/`, iat,
    };
    const data = `${b64url(encode(JSON.stringify(header)))}.${b64url(encode(JSON.stringify(payload)))}`;
    const key = await crypto.subtle.importKey(
      "raw", encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const signature = await crypto.subtle.sign("HMAC", key, encode(data));
    return `${data}.${b64url(new Uint8Array(signature))}`;
  }

  const tokens = new Map();

  async function token(act) {
    const creds = credentials();
    if (!creds) throw Object.assign(new Error("not signed in"), { code: "not-signed-in" });
    if (creds.token) return creds.token;
    const cacheKey = JSON.stringify(act || {});
    const cached = tokens.get(cacheKey);
    if (cached && cached.until > Date.now()) return cached.token;
    const signed = await signToken(creds.keyId, creds.secret, act || {});
    tokens.set(cacheKey, { token: signed, until: Date.now() + 300_000 });
    return signed;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, url, options = {}) {
    const headers = { authorization: `Bearer ${await token(options.act)}` };
    const creds = credentials();
    if (creds && creds.token && options.act) headers["x-statebacked-act"] = JSON.stringify(options.act);
    let body;
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    const response = await fetch(url, { method, headers, body });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      throw new ApiError(response.status, (data && data.code) || `http-${response.status}`,
        (data && data.error) || response.statusText);
    }
    return data;
  }

  function signInFromFragment() {
    // `backstate dev` prints a URL whose fragment holds its local credentials: the
    // fragment never leaves the browser, and is wiped from the address bar at once.
    const hash = location.hash;
    if (!hash.startsWith("#signin?")) return;
    const params = new URLSearchParams(hash.slice("#signin?".length));
    if (params.get("keyId") && params.get("secret")) {
      sessionStorage.setItem(AUTH_KEY, JSON.stringify(
        { keyId: params.get("keyId"), secret: params.get("secret") }));
    }
    history.replaceState(null, "", `${location.pathname}#/`);
  }

  function signInPage() {
    const error = el("div");
    const keyId = el("input", { name: "keyId", placeholder: "key id (sbk_...)", required: true, autocomplete: "off" });
    const secret = el("input", { name: "secret", type: "password", placeholder: "secret", required: true, autocomplete: "off" });
    const tokenInput = el("input", { name: "token", placeholder: "or a bearer token", autocomplete: "off" });
    const signIn = async (creds) => {
      sessionStorage.setItem(AUTH_KEY, JSON.stringify(creds));
      tokens.clear();
      try {
        await api("GET", "/machines");
        location.hash = "#/";
        route();
      } catch (e) {
        sessionStorage.removeItem(AUTH_KEY);
        showError(error, e);
      }
    };
    const keyForm = el("form", { id: "sign-in-key", onsubmit: (e) => {
      e.preventDefault();
      if (!window.crypto || !crypto.subtle) {
        showError(error, "signing needs a secure context (https or localhost): paste a token");
        return;
      }
      signIn({ keyId: keyId.value.trim(), secret: secret.value });
    } }, keyId, secret, el("button", { type: "submit" }, "Sign in with a key"));
    const tokenForm = el("form", { id: "sign-in-token", onsubmit: (e) => {
      e.preventDefault();
      signIn({ token: tokenInput.value.trim() });
    } }, tokenInput, el("button", { type: "submit" }, "Sign in with a token"));
    main.replaceChildren(el("div", { class: "card" },
      el("h1", {}, "Sign in"),
      el("p", { class: "muted" }, "With an org key (from `backstate keys create`, or the credentials file `backstate dev` writes). It stays in this tab."),
      keyForm, tokenForm, error));
  }

  // -- diagrams -------------------------------------------------------------------------

  let drawings = 0;
  const diagrams = new Map();

  function diagramOf(machine, versionId) {
    const key = `${machine}/${versionId}`;
    if (!diagrams.has(key)) {
      diagrams.set(key, api("GET", `/machines/${path(machine)}/v/${path(versionId)}/diagram`)
        .catch((e) => { diagrams.delete(key); throw e; }));
    }
    return diagrams.get(key);
  }

  async function draw(container, diagram) {
    const id = `d${++drawings}`;
    const { svg } = await mermaid.render(id, diagram.mermaid);
    const parsed = new DOMParser().parseFromString(svg, "image/svg+xml");
    if (parsed.querySelector("parsererror")) throw new Error("mermaid drew no SVG");
    const node = document.importNode(parsed.documentElement, true);
    backstateDecodeLabels(node);
    container.replaceChildren(node);
    return { svg: node, id, diagram };
  }

  function* walk(node) {
    yield node;
    for (const child of node.states) yield* walk(child);
  }

  function stateBox(drawn, stateId) {
    const name = drawn.diagram.stateNames[stateId];
    return name ? drawn.svg.querySelector(`g[id^="${drawn.id}-state-${name}-"]`) : null;
  }

  function activeIds(outline, value) {
    const active = new Set([outline.id]);
    const visit = (node, v) => {
      if (typeof v === "string") {
        const child = node.states.find((s) => s.key === v);
        if (child) active.add(child.id);
      } else if (v && typeof v === "object") {
        for (const [key, sub] of Object.entries(v)) {
          const child = node.states.find((s) => s.key === key);
          if (child) {
            active.add(child.id);
            visit(child, sub);
          }
        }
      }
    };
    visit(outline, value);
    return active;
  }

  function highlight(drawn, active) {
    for (const node of drawn.svg.querySelectorAll(".bs-active, .bs-active-group")) {
      node.classList.remove("bs-active", "bs-active-group");
      node.removeAttribute("data-active");
    }
    for (const node of walk(drawn.diagram.outline)) {
      const box = active.has(node.id) ? stateBox(drawn, node.id) : null;
      if (box) {
        box.classList.add(node.states.length ? "bs-active-group" : "bs-active");
        box.setAttribute("data-active", node.id);
      }
    }
  }

  function drawCounts(drawn, counts) {
    const ns = "http://www.w3.org/2000/svg";
    for (const badge of drawn.svg.querySelectorAll(".bs-count")) badge.remove();
    for (const [stateId, count] of Object.entries(counts)) {
      const box = stateBox(drawn, stateId);
      if (!box) continue;
      const bounds = box.getBBox();
      const text = document.createElementNS(ns, "text");
      text.setAttribute("class", "bs-count");
      text.setAttribute("data-state", stateId);
      text.textContent = String(count);
      const back = document.createElementNS(ns, "rect");
      back.setAttribute("class", "bs-count");
      box.append(back, text);
      const size = text.getBBox();
      const x = bounds.x + bounds.width - size.width / 2 - 4;
      const y = bounds.y + 2;
      text.setAttribute("x", String(x));
      text.setAttribute("y", String(y + size.height - 3));
      back.setAttribute("x", String(x - 4));
      back.setAttribute("y", String(y));
      back.setAttribute("width", String(size.width + 8));
      back.setAttribute("height", String(size.height));
      back.setAttribute("rx", "7");
    }
  }

  function acceptedEvents(outline, active) {
    const events = new Set();
    for (const node of walk(outline)) {
      if (!active.has(node.id)) continue;
      for (const t of node.transitions) {
        if (t.kind === "event" && !t.event.includes("*")) events.add(t.event);
      }
    }
    return [...events].sort();
  }

  // -- pages ----------------------------------------------------------------------------

  async function machinesPage() {
    main.replaceChildren(el("h1", {}, "Machines"), el("p", { class: "muted" }, "Loading…"));
    const { machines } = await api("GET", "/machines");
    const grid = el("div", { class: "grid" });
    main.replaceChildren(el("h1", {}, "Machines"), grid);
    if (!machines.length) grid.append(el("p", { class: "muted" }, "No machines yet."));
    for (const m of machines) {
      const box = el("div", { class: "diagram" }, el("span", { class: "muted" }, "no version yet"));
      grid.append(el("section", { class: "card machine", "data-machine": m.slug },
        el("h2", {}, link(machineHref(m.slug), m.slug)),
        m.currentVersion ? el("p", { class: "muted" }, `version ${m.currentVersion.id}`) : null,
        box));
      if (m.currentVersion) {
        diagramOf(m.slug, m.currentVersion.id).then((d) => draw(box, d)).catch((e) => showError(box, e));
      }
    }
  }

  async function machinePage(machine) {
    const [{ machine: info }, { versions }] = await Promise.all([
      api("GET", `/machines/${path(machine)}`),
      api("GET", `/machines/${path(machine)}/v`),
    ]);
    const current = info.currentVersion ? info.currentVersion.id : versions.length ? versions[versions.length - 1].id : null;
    const versionSelect = el("select", { name: "version" },
      versions.map((v) => el("option", { value: v.id, selected: v.id === current },
        `${v.id}${v.clientInfo ? ` (${v.clientInfo})` : ""}${v.id === current ? " — current" : ""}`)));
    const box = el("div", { class: "diagram" });
    const instancesBox = el("div");
    const queryBox = el("div");
    main.replaceChildren(
      el("h1", {}, machine),
      el("div", { class: "row" },
        el("section", { class: "card grow" }, el("h2", {}, "Diagram"),
          el("form", {}, el("label", {}, "Version ", versionSelect)), box),
        el("section", { class: "card grow" }, el("h2", {}, "Instances"), instancesBox)),
      el("section", { class: "card" }, el("h2", {}, "Query by index"), queryForm(machine, info.indexes, queryBox), queryBox));
    let drawn = null;
    const showVersion = async () => {
      drawn = null;
      if (!versionSelect.value) return;
      drawn = await draw(box, await diagramOf(machine, versionSelect.value));
      await fleet(machine, drawn, instancesBox);
    };
    versionSelect.addEventListener("change", () => showVersion().catch((e) => showError(box, e)));
    if (!versions.length) box.append(el("p", { class: "muted" }, "No versions."));
    await showVersion();
  }

  async function fleet(machine, drawn, where) {
    // Each instance's state (admin reads, a page of at most 100), counted per state of
    // the drawn version: the funnel on the diagram.
    const { instances } = await api("GET", `/machines/${path(machine)}/i`);
    const states = [];
    const queue = [...instances];
    const worker = async () => {
      while (queue.length) {
        const instance = queue.shift();
        const admin = await api("GET", `/machines/${path(machine)}/i/${path(instance.slug)}/admin`);
        states.push({ instance, admin });
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));
    states.sort((a, b) => a.instance.slug.localeCompare(b.instance.slug));
    const outline = drawn.diagram.outline;
    const counts = {};
    for (const s of states) {
      if (s.instance.machineVersion.id !== drawn.diagram.machineVersionId) continue;
      s.active = activeIds(outline, s.admin.state);
      for (const id of s.active) if (id !== outline.id) counts[id] = (counts[id] || 0) + 1;
    }
    drawCounts(drawn, counts);
    const stateSelect = el("select", { name: "state" }, el("option", { value: "" }, "any state"),
      [...walk(outline)].filter((n) => n !== outline && n.type !== "history")
        .map((n) => el("option", { value: n.id }, n.id)));
    const minutes = el("input", { name: "minutes", type: "number", min: "0", step: "any", placeholder: "minutes", size: "8" });
    const table = el("table", { id: "instances" });
    const render = () => {
      const since = minutes.value === "" ? null : Date.now() - Number(minutes.value) * 60_000;
      const rows = states.filter((s) => (!stateSelect.value || (s.active && s.active.has(stateSelect.value)))
        && (since === null || s.admin.ts <= since));
      table.replaceChildren(el("tr", {}, el("th", {}, "instance"), el("th", {}, "state"), el("th", {}, "status"), el("th", {}, "since")),
        ...rows.map((s) => el("tr", {},
          el("td", {}, link(instanceHref(machine, s.instance.slug), s.instance.slug)),
          el("td", {}, JSON.stringify(s.admin.state)),
          el("td", {}, s.admin.status),
          el("td", {}, new Date(s.admin.ts).toLocaleString()))));
    };
    stateSelect.addEventListener("change", render);
    minutes.addEventListener("input", render);
    render();
    where.replaceChildren(
      el("form", { onsubmit: (e) => e.preventDefault() }, "In ", stateSelect, " for longer than ", minutes, " minutes"),
      table,
      el("p", { class: "muted" }, instances.length === 100 ? "The first 100 instances." : `${instances.length} instances.`));
  }

  function queryForm(machine, indexes, where) {
    if (!indexes.length) return el("p", { class: "muted" }, "This machine declares no index.");
    const index = el("select", { name: "index" }, indexes.map((i) => el("option", { value: i }, i)));
    const op = el("select", { name: "op" }, el("option", { value: "" }, "all"),
      ["eq", "ne", "gt", "gte", "lt", "lte"].map((o) => el("option", { value: o }, o)));
    const value = el("input", { name: "value", placeholder: "value" });
    const type = el("select", { name: "type" }, ["string", "number"].map((t) => el("option", { value: t }, t)));
    const dir = el("select", { name: "dir" }, ["asc", "desc"].map((d) => el("option", { value: d }, d)));
    return el("form", { id: "query", onsubmit: async (e) => {
      e.preventDefault();
      const params = new URLSearchParams({ type: type.value, dir: dir.value });
      if (op.value) {
        params.set("op", op.value);
        params.set("value", value.value);
      }
      try {
        const result = await api("GET", `/machines/${path(machine)}/indexes/${path(index.value)}/query?${params}`);
        where.replaceChildren(el("table", { id: "query-results" },
          el("tr", {}, el("th", {}, "instance"), el("th", {}, "index value")),
          result.instances.map((hit) => el("tr", {},
            el("td", {}, link(instanceHref(machine, hit.slug), hit.slug)),
            el("td", {}, JSON.stringify(hit.indexValue))))));
      } catch (err) {
        showError(where, err);
      }
    } }, index, op, value, type, dir, el("button", { type: "submit" }, "Query"));
  }

  // -- an instance ----------------------------------------------------------------------

  async function instancePage(machine, name) {
    const base = `/machines/${path(machine)}/i/${path(name)}`;
    const actKey = `backstate.act.${machine}`;
    const act = () => {
      try {
        return JSON.parse(actInput.value || "{}");
      } catch {
        return {};
      }
    };
    const actInput = el("input", { name: "act", size: "30", value: sessionStorage.getItem(actKey) || "{}" });
    const status = el("span", { id: "live-status", class: "muted" });
    const box = el("div", { class: "diagram", id: "instance-diagram" });
    const slider = el("input", { type: "range", id: "time-travel", min: "0", max: "0", value: "0" });
    const stepInfo = el("div", { id: "step" });
    const contextBox = el("div", { id: "context" });
    const timeline = el("ol", { id: "timeline" });
    const controls = el("div");
    const logsBox = el("pre", { id: "logs" });
    const timersBox = el("div", { id: "timers" });
    const progressBox = el("div", { id: "progress" });
    const upgradeBox = el("div");
    main.replaceChildren(
      el("h1", {}, el("a", { href: machineHref(machine) }, machine), " / ", el("span", { id: "instance-name" }, name)),
      el("form", { onsubmit: (e) => { e.preventDefault(); sessionStorage.setItem(actKey, actInput.value); subscribe(); } },
        el("label", {}, "Auth context (what the machine's authorizers see) ", actInput),
        el("button", { type: "submit" }, "Apply"), status),
      el("div", { class: "row" },
        el("section", { class: "card grow" }, el("h2", {}, "State"), box,
          el("h2", {}, "History"), slider, stepInfo, timeline),
        el("section", { class: "card grow" }, controls, el("h2", {}, "Context"), contextBox,
          el("h2", {}, "Running services' progress"), progressBox,
          el("h2", {}, "Pending timers"), timersBox,
          el("h2", {}, "Logs"), logsBox, el("h2", {}, "Upgrade"), upgradeBox)));

    let admin = await api("GET", `${base}/admin`);
    let transitions = [];
    let drawn = null;
    let following = true;

    const loadHistory = async () => {
      transitions = [];
      let cursor = null;
      do {
        const page = await api("GET", `${base}/events${cursor ? `?cursor=${cursor}` : ""}`);
        transitions.push(...page.transitions);
        cursor = page.cursor;
      } while (cursor);
    };

    const showStep = (index) => {
      const step = transitions[index];
      if (!step || !drawn) return;
      highlight(drawn, activeIds(drawn.diagram.outline, step.state));
      stepInfo.replaceChildren(
        el("p", {}, `Step ${index + 1} of ${transitions.length} · ${step.createdAt}`),
        el("div", {}, "Event"), el("pre", { id: "step-event" }, json(step.event)),
        el("div", {}, "Context after it"), el("pre", { id: "step-context" }, json(step.context)));
      for (const [i, item] of [...timeline.children].entries()) item.classList.toggle("current", i === index);
    };

    const showTimeline = () => {
      slider.max = String(Math.max(transitions.length - 1, 0));
      timeline.replaceChildren(...transitions.map((t, i) => el("li", {},
        el("a", { href: "#", onclick: (e) => { e.preventDefault(); following = i === transitions.length - 1; slider.value = String(i); showStep(i); } },
          `${t.createdAt} ${t.event && t.event.type ? t.event.type : JSON.stringify(t.event)} → ${JSON.stringify(t.state)}`))));
      if (following) slider.value = slider.max;
      showStep(Number(slider.value));
    };

    slider.addEventListener("input", () => {
      following = Number(slider.value) === transitions.length - 1;
      showStep(Number(slider.value));
    });

    // Built once and updated in place, so a live update never wipes what is being typed.
    const statusBadge = el("span", { id: "status", class: "badge" });
    const versionText = el("span", { id: "version" });
    const stateText = el("code", { id: "state" });
    const pauseButton = el("button", { type: "button", id: "pause", onclick: () =>
      setStatus(admin.status === "paused" ? "running" : "paused") });
    const accepted = el("datalist", { id: "accepted-events" });
    const acceptedText = el("span", { class: "muted" });
    controls.replaceChildren(
      el("p", {}, "Status ", statusBadge, " · version ", versionText, " · state ", stateText),
      pauseButton, sendForm());

    const showNow = () => {
      contextBox.replaceChildren(el("div", {}, "Public"), el("pre", { id: "public-context" }, json(admin.publicContext)),
        el("div", {}, "Full (admin)"), el("pre", { id: "full-context" }, json(admin.context)));
      statusBadge.textContent = admin.status;
      versionText.textContent = admin.machineVersion.id;
      stateText.textContent = JSON.stringify(admin.state);
      pauseButton.textContent = admin.status === "paused" ? "Resume" : "Pause";
      const events = drawn ? acceptedEvents(drawn.diagram.outline, activeIds(drawn.diagram.outline, admin.state)) : [];
      accepted.replaceChildren(...events.map((ev) => el("option", { value: ev })));
      acceptedText.textContent = events.length ? `accepted now: ${events.join(", ")}` : "";
    };

    const showTimers = async () => {
      const { timers } = await api("GET", `${base}/timers`);
      timersBox.replaceChildren(timers.length
        ? el("table", {}, el("tr", {}, el("th", {}, "due"), el("th", {}, "event")),
          ...timers.map((t) => el("tr", {}, el("td", {}, t.dueAt), el("td", {}, JSON.stringify(t.event)))))
        : el("p", { class: "muted" }, "None."));
    };

    const refresh = async () => {
      admin = await api("GET", `${base}/admin`);
      await loadHistory();
      showNow();
      showTimeline();
      await showTimers();
    };

    const setStatus = async (value) => {
      try {
        await api("PUT", `${base}/status`, { body: { status: value } });
        await refresh();
      } catch (e) {
        showError(stepInfo, e);
      }
    };

    function sendForm() {
      const type = el("input", { name: "event", list: "accepted-events", placeholder: "event type", required: true });
      const data = el("input", { name: "data", placeholder: "data (JSON object, optional)", size: "24" });
      const result = el("span", { class: "muted", id: "send-result" });
      return el("form", { id: "send-event", onsubmit: async (e) => {
        e.preventDefault();
        try {
          const extra = data.value.trim() ? JSON.parse(data.value) : {};
          await api("POST", `${base}/events`, { body: { event: { ...extra, type: type.value } }, act: act() });
          result.textContent = "sent";
          await refresh();
        } catch (err) {
          result.textContent = err.code ? `${err.message} (${err.code})` : String(err);
        }
      } },
      accepted, el("label", {}, "Send ", type), data, el("button", { type: "submit" }, "Send"), acceptedText, result);
    }

    // Progress a running service publishes (not state: it is never in the history),
    // per invoke: text pieces ({"token": "..."}) joined as they stream, else the latest
    // value. A state update ends it (the service's result is in the new state).
    const progress = new Map();
    const showProgress = () => {
      progressBox.replaceChildren(progress.size
        ? el("dl", {}, ...[...progress].flatMap(([id, p]) => [
          el("dt", {}, id),
          el("dd", {}, el("pre", { class: "progress", "data-invoke": id }, p.text !== null ? p.text : json(p.last)))]))
        : el("p", { class: "muted" }, "None."));
    };
    showProgress();
    const addProgress = (invokeId, data) => {
      const id = String(invokeId);
      const p = progress.get(id) || { text: "", last: null };
      if (data && typeof data === "object" && typeof data.token === "string" && p.text !== null) {
        p.text += data.token;
      } else {
        p.text = null;
      }
      p.last = data;
      progress.set(id, p);
      showProgress();
    };

    // Live: /rt with a token carrying the auth context; if the machine's allow_read
    // refuses it, the admin routes are polled instead (the key may read them).
    let socket = null;
    let poll = null;
    const stopLive = () => {
      if (socket) socket.close();
      socket = null;
      clearInterval(poll);
      poll = null;
    };
    const pollInstead = (why) => {
      // A refusal by the machine's allow_read is the auth context's doing: say so, in a
      // colour that is not success's, with what to change.
      const refused = why === "rejected-by-machine-authorizer";
      status.textContent = refused
        ? `live by polling: allow_read refused this auth context (${why}); set the end user it acts for above to follow over /rt`
        : `live by polling (${why})`;
      status.className = refused ? "warn" : "live";
      poll = setInterval(() => refresh().catch(() => {}), 1500);
    };
    async function subscribe() {
      stopLive();
      const creds = credentials();
      if (creds.token && Object.keys(act()).length) {
        pollInstead("a token cannot carry another auth context");
        return;
      }
      const url = new URL("/rt", location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      url.searchParams.set("token", await token(act()));
      const ws = new WebSocket(url);
      socket = ws;
      ws.addEventListener("open", () => ws.send(JSON.stringify({
        type: "subscribe-to-instance", machineName: machine, machineInstanceName: name, requestId: "dashboard",
      })));
      ws.addEventListener("message", (message) => {
        let data = null;
        try {
          data = JSON.parse(message.data);
        } catch {
          return;
        }
        if (data.type === "instance-progress") {
          addProgress(data.invokeId, data.data);
        } else if (data.type === "instance-update") {
          status.textContent = "live over /rt";
          status.className = "live";
          progress.clear();
          showProgress();
          refresh().catch((e) => showError(stepInfo, e));
        } else if (data.type === "error") {
          ws.close();
          if (socket === ws) {
            socket = null;
            pollInstead(data.code || "refused");
          }
        }
      });
      ws.addEventListener("close", () => {
        if (socket === ws) {
          socket = null;
          pollInstead("connection closed");
        }
      });
    }

    async function logs() {
      const params = new URLSearchParams({ machine, instance: name, from: new Date(Date.now() - 3600_000).toISOString() });
      try {
        const result = await api("GET", `/logs?${params}`);
        logsBox.textContent = (result.logs || []).map((l) => `${l.timestamp || ""} ${l.log ?? l.message ?? JSON.stringify(l)}`).join("\n") || "(none in the last hour)";
      } catch (e) {
        logsBox.textContent = e.code ? `${e.message} (${e.code})` : String(e);
      }
    }

    async function upgrade() {
      const { versions } = await api("GET", `/machines/${path(machine)}/v`);
      const target = el("select", { name: "target" }, versions.map((v) => el("option", { value: v.id }, v.id)));
      const report = el("div", { id: "dry-run" });
      upgradeBox.replaceChildren(el("form", { onsubmit: (e) => e.preventDefault() }, target,
        el("button", { type: "button", onclick: async () => {
          try {
            const result = await api("POST", `${base}/v/dry-run`, { body: { targetMachineVersionId: target.value } });
            const path = result.migrationPath.length ? ` through ${result.migrationPath.join(" → ")}` : "";
            if (result.divergedAt === null) {
              report.replaceChildren(el("p", { id: "dry-run-summary" },
                `Replayed ${result.replayed} transitions on ${result.toMachineVersionId}${path}: the same states and context.`));
            } else {
              report.replaceChildren(
                el("p", { id: "dry-run-summary" },
                  `Replayed ${result.replayed} transitions${path}; it diverges at transition #${result.divergedAt}, event ${JSON.stringify(result.event)}: `
                  + "this version's result (+) against the current one's, migrated (-)."),
                diff(json(result.expected), json(result.actual)));
            }
          } catch (e) {
            showError(report, e);
          }
        } }, "Dry run"),
        el("button", { type: "button", onclick: async () => {
          try {
            await api("PUT", `${base}/v`, { body: { targetMachineVersionId: target.value, upgradeNow: true } });
            await refresh();
          } catch (e) {
            showError(report, e);
          }
        } }, "Upgrade")), report);
    }

    drawn = await draw(box, await diagramOf(machine, admin.machineVersion.id));
    await refresh();
    await subscribe();
    logs();
    upgrade().catch((e) => showError(upgradeBox, e));
    const logTimer = setInterval(logs, 3000);
    cleanups.push(stopLive, () => clearInterval(logTimer));
  }

  function diff(before, after) {
    // Line diff (longest common subsequence) of two JSON texts.
    const a = before.split("\n");
    const b = after.split("\n");
    const table = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0));
    for (let i = a.length - 1; i >= 0; i--) {
      for (let j = b.length - 1; j >= 0; j--) {
        table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
      }
    }
    const out = el("pre", { class: "diff" });
    let i = 0;
    let j = 0;
    while (i < a.length || j < b.length) {
      if (i < a.length && j < b.length && a[i] === b[j]) {
        out.append(el("div", {}, `  ${a[i]}`));
        i++;
        j++;
      } else if (j < b.length && (i === a.length || table[i][j + 1] >= table[i + 1][j])) {
        out.append(el("div", { class: "diff-add" }, `+ ${b[j++]}`));
      } else {
        out.append(el("div", { class: "diff-del" }, `- ${a[i++]}`));
      }
    }
    return out;
  }

  // -- dead letters ---------------------------------------------------------------------

  async function deadLettersPage() {
    const list = el("div");
    main.replaceChildren(el("h1", {}, "Dead letters"),
      el("p", { class: "muted" }, "Messages between instances that exhausted their retries."), list);
    const load = async () => {
      const { deadLetters } = await api("GET", "/dead-letters");
      if (!deadLetters.length) {
        list.replaceChildren(el("p", { class: "muted", id: "no-dead-letters" }, "None."));
        return;
      }
      list.replaceChildren(el("table", { id: "dead-letters" },
        el("tr", {}, ["id", "from", "to", "event", "error", "attempts", ""].map((h) => el("th", {}, h))),
        deadLetters.map((d) => el("tr", { "data-id": d.id },
          el("td", {}, d.id),
          el("td", {}, `${d.from.machineName}/${d.from.machineInstanceName}`),
          el("td", {}, `${d.to.machineName}/${d.to.machineInstanceName}`),
          el("td", {}, el("pre", {}, json(d.event))),
          el("td", {}, d.error || ""),
          el("td", {}, d.attempts),
          el("td", {}, el("button", { type: "button", class: "redeliver", onclick: async (e) => {
            e.target.disabled = true;
            try {
              await api("POST", `/dead-letters/${path(String(d.id))}/redeliver`);
              await load();
            } catch (err) {
              showError(list, err);
            }
          } }, "Redeliver"))))));
    };
    await load();
  }

  // -- routing --------------------------------------------------------------------------

  async function route() {
    for (const cleanup of cleanups) cleanup();
    cleanups = [];
    const creds = credentials();
    document.getElementById("sign-out").hidden = !creds;
    document.getElementById("who").textContent = creds ? (creds.keyId || "token") : "";
    if (!creds) {
      signInPage();
      return;
    }
    const parts = location.hash.replace(/^#\/?/, "").split("/").map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
    try {
      if (parts[0] === "m" && parts[1] && parts[2] === "i" && parts[3]) await instancePage(parts[1], parts[3]);
      else if (parts[0] === "m" && parts[1]) await machinePage(parts[1]);
      else if (parts[0] === "dead-letters") await deadLettersPage();
      else await machinesPage();
    } catch (e) {
      if (e.status === 401) {
        sessionStorage.removeItem(AUTH_KEY);
        signInPage();
        return;
      }
      const error = el("div");
      showError(error, e);
      main.replaceChildren(el("h1", { id: "page-title" }, parts.filter(Boolean).join(" / ") || "Machines"), error);
    }
  }

  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(AUTH_KEY);
    tokens.clear();
    route();
  });
  window.addEventListener("hashchange", route);
  mermaid.initialize({
    startOnLoad: false, securityLevel: "strict", htmlLabels: false,
    flowchart: { htmlLabels: false }, state: { htmlLabels: false },
  });
  signInFromFragment();
  route();
})();
