// The supervisor's page: renders the endpoint's snapshots (server-sent events from /events)
// and sends the local control's requests (POST /api/...). No framework, nothing fetched from
// elsewhere; every asset comes from the endpoint.
"use strict";

let state = null;
let sortKey = "id";
let sortDir = 1;
let recordingsSeen = "";

const $ = (id) => document.getElementById(id);

function text(el, s) { if (el.textContent !== s) el.textContent = s; }

function since(t) {
  if (t == null) return "–";
  const s = Math.max(0, Math.floor(Date.now() / 1000 - t));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
}

function dbfs(level) {
  if (!level) return null;
  return 20 * Math.log10(level / 32768);
}

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
  let answer = {};
  try { answer = await r.json(); } catch (e) { answer = { result: "refused", reason: await r.text() }; }
  if (answer.result === "refused") {
    showMessage(answer.reason || "refused");
  } else {
    showMessage("");
  }
  return answer;
}

function showMessage(m) {
  const el = $("message");
  text(el, m);
  el.hidden = !m;
}

function linkText(link, user) {
  switch (link.state) {
    case "connected": return `Connected to ${link.server} as ${user}`;
    case "connecting":
      if (link.trying) return `Trying appliance ${link.trying}…`;
      return link.error ? `${link.error}; trying the next appliance…` : "Connecting…";
    case "unreachable": return `No appliance answers${link.trying ? " (last tried " + link.trying + ")" : ""}: ${link.error || ""}`;
    case "login_refused": return `Login refused (wrong password or unknown supervisor): ${link.error || ""}`;
    default: return "Not connected yet";
  }
}

function renderLink(s) {
  const el = $("link");
  text(el, linkText(s.status.link, s.status.user));
  el.className = "link " + s.status.link.state;
  text($("user"), s.status.user ? `· ${s.status.user}` : "");
}

function renderListening(s) {
  const st = s.status;
  let line;
  if (st.monitoring) {
    line = `Listening to agent ${st.agent}`;
    if (st.call_id) line += `, call ${st.call_id}` + (st.appliance ? ` on ${st.appliance}` : "");
    else line += " (no call right now)";
  } else if (st.agent) {
    line = `Starting to listen to agent ${st.agent}…`;
  } else {
    line = "Not monitoring. Choose an agent below.";
  }
  text($("monitoring"), line);
  const intr = $("interrupted");
  text(intr, st.interrupted ? `Audio interrupted: ${st.interrupted}` : "");
  intr.hidden = !st.interrupted;
  if (st.error) showMessage(st.error);
  $("stop").disabled = !st.agent;
  [["agent", 0], ["caller", 1]].forEach(([side, i]) => {
    const db = dbfs(st.levels ? st.levels[i] : 0);
    const m = $("meter-" + side);
    const v = db == null ? 0 : Math.max(0, Math.min(100, (db + 60) * 100 / 60));
    m.value = v;
    m.dataset.level = String(st.levels ? st.levels[i] : 0);
    text($("db-" + side), db == null ? "–" : `${db.toFixed(0)} dBFS`);
  });
  const figures = [
    ["Packets", st.packets], ["Lost", st.lost], ["Late", st.late],
    ["Concealed", `${((st.concealed_ms || 0) / 1000).toFixed(1)} s`],
    ["Delay agent", `${(st.delay_ms || [0, 0])[0]} ms`], ["Delay caller", `${(st.delay_ms || [0, 0])[1]} ms`],
    ["Device", st.device || "none (recording only)"],
  ];
  const dl = $("hearing");
  const html = figures.map(([k, v]) => `<div><dt>${k}</dt><dd>${escapeHtml(String(v))}</dd></div>`).join("");
  if (dl.innerHTML !== html) dl.innerHTML = html;
  const q = $("quality").tBodies[0];
  const rows = (s.quality || []).map((l) =>
    `<tr data-direction="${l.direction}"><th scope="row">${l.direction === "from_agent" ? "Agent → caller" : "Caller → agent"}</th>` +
    `<td>${escapeHtml(l.codec)}</td><td>${l.loss_pct.toFixed(1)} %</td><td>${l.jitter_ms.toFixed(1)} ms</td>` +
    `<td>${l.r.toFixed(0)}</td><td class="mos">${l.mos.toFixed(2)}</td></tr>`).join("");
  const qhtml = rows || `<tr><td colspan="6">No audio on the wire now.</td></tr>`;
  if (q.innerHTML !== qhtml) q.innerHTML = qhtml;
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function callText(c) {
  if (!c) return "–";
  const arrow = c.direction === "outbound" ? "to" : "from";
  return `${arrow} ${c.other}${c.hold ? " (on hold)" : ""}, ${since(c.started)}`;
}

function sortValue(a) {
  switch (sortKey) {
    case "team": return a.team || "";
    case "state": return a.state;
    case "since": return a.since == null ? Infinity : a.since;
    case "call": return a.call ? a.call.started : Infinity;
    default: return a.id;
  }
}

function renderTeam(s) {
  const filter = $("filter").value.trim().toLowerCase();
  const agents = s.agents.filter((a) => !filter ||
    [a.id, a.extension, a.team || "", a.state, a.call ? a.call.other : ""].some((v) => v.toLowerCase().includes(filter)));
  agents.sort((x, y) => {
    const a = sortValue(x), b = sortValue(y);
    return (a < b ? -1 : a > b ? 1 : 0) * sortDir;
  });
  const body = $("team").tBodies[0];
  const html = agents.map((a) => {
    const mine = a.id === s.status.agent;
    const button = mine
      ? `<button type="button" class="stop" data-agent="${escapeHtml(a.id)}" aria-label="Stop listening to ${escapeHtml(a.id)}">Stop</button>`
      : `<button type="button" class="monitor" data-agent="${escapeHtml(a.id)}" aria-label="Listen to ${escapeHtml(a.id)}">Monitor</button>`;
    return `<tr data-agent="${escapeHtml(a.id)}" class="${mine ? "monitored" : ""}">` +
      `<th scope="row">${escapeHtml(a.id)}</th><td>${escapeHtml(a.team || "")}</td>` +
      `<td class="state">${escapeHtml(a.state)}</td><td class="since">${since(a.since)}</td>` +
      `<td class="call">${escapeHtml(callText(a.call))}</td>` +
      `<td>${escapeHtml((a.call && a.call.appliance) || "")}</td><td>${button}</td></tr>`;
  }).join("");
  if (body.innerHTML !== html) {
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.agent : null;
    body.innerHTML = html;
    if (focused) {
      const again = body.querySelector(`button[data-agent="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }
  $("team-empty").hidden = agents.length > 0;
}

function renderControls(s) {
  const st = s.status;
  const sel = $("device");
  const wanted = ["", ...(s.devices || [])];
  const have = Array.from(sel.options).map((o) => o.value);
  if (have.join("\n") !== wanted.join("\n")) {
    sel.innerHTML = wanted.map((d) => `<option value="${escapeHtml(d)}">${d ? escapeHtml(d) : "System default"}</option>`).join("");
  }
  if (document.activeElement !== sel) sel.value = st.device_name || "";
  const vol = $("volume");
  if (document.activeElement !== vol) vol.value = st.volume_pct;
  text($("volume-value"), `${vol.value} %`);
  $("stereo").checked = !!st.stereo;
  const rec = $("record");
  rec.checked = !!st.recording;
  rec.disabled = !s.can_record;
  text($("record-note"), s.can_record ? "" : "(start the endpoint with --record DIR to record)");
  text($("device-state"), st.device ? `Playing on ${st.device_name || "the default device"} (${st.device}).`
    : "No sound device could be opened: calls are recorded only.");
}

async function refreshRecordings() {
  const r = await fetch("/api/recordings", { credentials: "same-origin" });
  if (!r.ok) return;
  const list = await r.json();
  const key = list.map((x) => x.name + x.bytes).join("|");
  if (key === recordingsSeen) return;
  recordingsSeen = key;
  const ul = $("recordings");
  ul.innerHTML = list.map((x) => {
    const url = "/recordings/" + encodeURIComponent(x.name);
    const when = new Date(x.modified * 1000).toLocaleString();
    return `<li><span>${escapeHtml(x.name)}</span><span class="note">${when}, ${(x.bytes / 1024).toFixed(0)} KiB</span>` +
      `<audio controls preload="none" src="${url}"></audio><a href="${url}" download="${escapeHtml(x.name)}">Download</a></li>`;
  }).join("");
  $("recordings-empty").hidden = list.length > 0;
}

function render() {
  if (!state) return;
  renderLink(state);
  renderListening(state);
  renderTeam(state);
  renderControls(state);
}

function output() {
  return post("/api/output", {
    device: $("device").value,
    stereo: $("stereo").checked,
    volume_pct: Number($("volume").value),
  });
}

function wire() {
  $("team").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.dataset.sort) {
      sortDir = sortKey === b.dataset.sort ? -sortDir : 1;
      sortKey = b.dataset.sort;
      document.querySelectorAll("th button[data-sort]").forEach((x) => x.removeAttribute("aria-sort"));
      b.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      return render();
    }
    if (b.classList.contains("monitor")) post("/api/monitor", { agent: b.dataset.agent });
    if (b.classList.contains("stop")) post("/api/stop");
  });
  $("stop").addEventListener("click", () => post("/api/stop"));
  $("filter").addEventListener("input", render);
  $("device").addEventListener("change", output);
  $("stereo").addEventListener("change", output);
  $("volume").addEventListener("change", output);
  $("volume").addEventListener("input", () => text($("volume-value"), `${$("volume").value} %`));
  $("record").addEventListener("change", () => post("/api/record", { on: $("record").checked }));
  const events = new EventSource("/events");
  events.onmessage = (e) => { state = JSON.parse(e.data); render(); };
  events.onerror = () => {
    const el = $("link");
    text(el, "The supervisor endpoint is not answering (is silentmon supervisor running?)");
    el.className = "link unreachable";
  };
  setInterval(render, 1000);
  setInterval(refreshRecordings, 5000);
  refreshRecordings();
}

document.addEventListener("DOMContentLoaded", wire);
