// The compliance officer's console: find sessions, open one (timeline, images,
// decisions, audit trail), play both sides of its recording in step, verify its
// evidence, export the package. The server audits every one of these actions.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const OUTCOMES = { approved: "Approved", rejected: "Rejected", suspended: "Suspended", completed: "Completed",
    abandoned: "Abandoned", expired: "Expired", open: "Not finished" };
  const BAD = ["face_mismatch", "recording_interrupted", "recording_failed", "no_recording", "virtual_camera",
    "mrz_check_failed", "document_expired", "several_faces", "frames_frozen", "timestamps_too_regular"];
  let current = null;

  // the login's CSRF token: the server refuses a POST authenticated by the login cookie
  // without it in this header (a page of another site cannot read the cookie)
  function csrfToken() {
    const found = document.cookie.split("; ").find((c) => /^(__Host-)?videoid_csrf=/.test(c));
    return found ? found.slice(found.indexOf("=") + 1) : "";
  }
  async function api(path, body) {
    const headers = body ? { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() } : {};
    const r = await fetch(path, { method: body ? "POST" : "GET", credentials: "same-origin",
      headers, body: body && JSON.stringify(body) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      // a login unused too long has ended: back to the login
      if (data.error && data.error.code === "login_expired") location.reload();
      throw (data.error || { code: "http_" + r.status, message: r.statusText });
    }
    return data;
  }
  function fail(message) { const e = $("error"); e.textContent = message; e.hidden = false; }
  function clearError() { $("error").hidden = true; }
  function when(at) { return at == null ? "–" : new Date(at * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC"; }
  function cell(row, text) { const c = row.insertCell(); c.textContent = text == null || text === "" ? "–" : text; return c; }
  function flagList(box, flags) {
    box.textContent = "";
    for (const flag of flags) {
      const span = document.createElement("span");
      span.className = "flag" + (BAD.includes(flag) ? " bad" : ""); span.dataset.flag = flag;
      span.textContent = flag.replaceAll("_", " "); box.append(span);
    }
  }

  async function start() {
    try { show(await api("/api/operator/me")); }
    catch (e) { $("screen-login").hidden = false; }
  }

  // the password, then a code (an authenticator enrolled at the first login)
  videoid.staffLogin(api, fail, clearError, show);
  $("logout").onclick = async () => { await api("/api/operator/logout", {}); location.reload(); };

  function show(me) {
    const who = me.operator;
    $("screen-login").hidden = true; $("logout").hidden = false;
    $("who").textContent = `${who.username} (${who.role})`;
    if (who.role !== "compliance") { fail("This console is for compliance officers."); return; }
    $("screen-console").hidden = false;
    videoid.keepAlive(api);
    search();
  }

  $("search-form").onsubmit = (ev) => { ev.preventDefault(); search(); };
  // the cursor of every page shown since the search ("" for the first): Older pushes
  // the answer's next, Newer goes back one
  let pages = [""], query = null, next = null;
  $("page-older").onclick = () => { if (next) { pages.push(next); load(); } };
  $("page-newer").onclick = () => { if (pages.length > 1) { pages.pop(); load(); } };

  function search() {
    query = new URLSearchParams();
    for (const el of $("search-form").elements) if (el.name && el.value.trim()) query.set(el.name, el.value.trim());
    pages = [""];
    return load();
  }

  async function load() {
    clearError();
    const params = new URLSearchParams(query);
    if (pages.at(-1)) params.set("after", pages.at(-1));
    let found;
    try { found = await api("/api/compliance/sessions?" + params); }
    catch (e) { fail(e.message); return; }
    fillChoices($("q-outcome"), found.outcomes, OUTCOMES);
    fillChoices($("q-flag"), found.flags, {});
    const body = $("results").tBodies[0]; body.textContent = "";
    for (const s of found.sessions) {
      const row = body.insertRow(); row.dataset.session = s.session_id;
      cell(row, when(s.created_at)); cell(row, s.customer);
      cell(row, [s.document.type, s.document.country, s.document.number].filter(Boolean).join(" "));
      cell(row, s.state); cell(row, s.operator);
      flagList(row.insertCell(), s.flags);
      const b = document.createElement("button"); b.className = "small open"; b.textContent = "Open";
      b.onclick = () => open(s.session_id); row.insertCell().append(b);
    }
    $("results").hidden = false;
    const first = (pages.length - 1) * found.page_size + 1;
    $("result-count").textContent = found.total === 0 ? "0 sessions"
      : `${first}–${first + found.sessions.length - 1} of ${found.total} session(s)`;
    next = found.next;
    $("pager").hidden = !found.next && pages.length === 1;
    $("page-older").disabled = !found.next;
    $("page-newer").disabled = pages.length === 1;
  }

  function fillChoices(select, values, labels) {
    if (select.options.length > 1) return;
    for (const v of values) { const o = document.createElement("option"); o.value = v; o.textContent = labels[v] || v.replaceAll("_", " "); select.append(o); }
  }

  async function open(sessionId) {
    clearError();
    let s;
    try { s = await api(`/api/compliance/sessions/${sessionId}`); }
    catch (e) { fail(e.message); return; }
    current = s;
    $("detail").hidden = false; $("verdict").hidden = true;
    $("d-id").textContent = s.session_id; $("d-state").textContent = s.state;
    flagList($("d-flags"), s.flags);

    const customer = $("d-customer").tBodies[0]; customer.textContent = "";
    for (const [k, v] of Object.entries(s.customer_data || {})) { const r = customer.insertRow(); cell(r, k.replaceAll("_", " ")); cell(r, v); }
    const decisions = $("d-decisions"); decisions.textContent = "";
    for (const d of s.deciders) { const li = document.createElement("li"); li.textContent = `${d.outcome} by ${d.operator}`; decisions.append(li); }

    $("d-seal").textContent = s.seal
      ? `Seal ${s.seal.seals} (${s.seal.event.replaceAll("_", " ")}) ${when(s.seal.sealed_at)}${s.seal.timestamped ? ", timestamped" : ", NOT timestamped"}: ${s.seal.items} items; provider key fingerprint ${s.seal.fingerprint}`
      : "Not sealed yet (sealed at the decision and after every later event).";
    $("verify").disabled = !s.seal;

    const images = $("d-images"); images.textContent = "";
    for (const o of s.objects.filter((o) => o.content_type.startsWith("image/"))) {
      const fig = document.createElement("figure");
      const caption = document.createElement("figcaption"); caption.textContent = o.kind.replaceAll("_", " ");
      if (o.destroyed) { caption.textContent += " (destroyed)"; fig.append(caption); images.append(fig); continue; }
      const img = document.createElement("img"); img.alt = o.kind;
      img.src = `/api/compliance/sessions/${s.session_id}/objects/${o.id}`;
      img.onclick = () => { $("viewer-img").src = img.src; $("viewer").hidden = false; };
      fig.append(img, caption); images.append(fig);
    }

    if (!images.children.length) images.textContent = "No images.";

    const timeline = $("d-timeline").tBodies[0]; timeline.textContent = "";
    for (const e of s.timeline) { const r = timeline.insertRow(); cell(r, when(e.at)); cell(r, e.kind.replaceAll("_", " ")); cell(r, e.actor); cell(r, e.text); }
    const audit = $("d-audit").tBodies[0]; audit.textContent = "";
    for (const e of s.audit) {
      const r = audit.insertRow(); r.dataset.action = e.action;
      cell(r, e.seq); cell(r, when(e.at)); cell(r, e.action.replaceAll("_", " ")); cell(r, e.actor);
      cell(r, e.details ? JSON.stringify(e.details) : "(erased)");
    }
    await loadRecording(s);
  }

  // what the recording lacks: a side that never sent, a late start, a frozen picture
  function mediaHoles(sum) {
    const name = (stream) => stream.replace("_", " ");
    const parts = [];
    if (sum.missing && sum.missing.length) parts.push("never received: " + sum.missing.map(name).join(", "));
    for (const h of sum.holes || []) parts.push(`no ${name(h.stream)} from ${h.from} s to ${h.to} s`);
    return parts.length ? ". " + parts.join("; ") + "." : "";
  }

  async function loadRecording(s) {
    const players = [$("play-customer"), $("play-operator")];
    for (const p of players) { p.pause(); p.removeAttribute("src"); p.load(); }
    const rec = s.recordings.filter((r) => !r.destroyed).pop();
    const info = $("d-recording");
    if (!rec) { info.textContent = s.recordings.length ? "The recording was destroyed at the end of its retention." : "No recording."; $("players").hidden = true; return; }
    const sum = rec.summary || {};
    info.textContent = `${rec.status}, ${sum.seconds != null ? sum.seconds + " s" : "length unknown"}` +
      `${sum.segments != null ? ", " + sum.segments + " segments" : ""}${sum.error ? " — " + sum.error : ""}` +
      mediaHoles(sum);
    try {
      for (const [side, player] of [["customer", players[0]], ["operator", players[1]]]) {
        const link = await api(`/api/compliance/recordings/${rec.id}/play`, { side });
        player.src = link.url;
      }
      $("players").hidden = false;
    } catch (e) { fail(e.message); }
  }

  // the operator's side follows the customer's: one play, pause and seek bar for both
  const lead = $("play-customer"), follow = $("play-operator");
  lead.addEventListener("play", () => { follow.currentTime = lead.currentTime; follow.play().catch(() => {}); });
  lead.addEventListener("pause", () => follow.pause());
  lead.addEventListener("seeked", () => { follow.currentTime = lead.currentTime; });

  $("verify").onclick = async () => {
    if (!current) return;
    const box = $("verdict"); box.hidden = false; box.className = "status"; box.textContent = "Verifying…";
    try {
      const v = await api(`/api/compliance/sessions/${current.session_id}/verify`, {});
      box.className = "status " + (v.ok ? "ok" : "bad");
      box.textContent = v.ok ? `Verified: ${v.items.length} items match the seal of ${when(v.sealed_at)}; the audit log is intact.` : "Evidence does NOT verify:";
      if (!v.ok) { const ul = document.createElement("ul"); for (const p of v.problems) { const li = document.createElement("li"); li.textContent = p; ul.append(li); } box.append(ul); }
    } catch (e) { box.className = "status bad"; box.textContent = e.message; }
  };

  // a download link would do nothing visible when the server refuses: fetch, then save
  $("export").onclick = async () => {
    if (!current) return;
    const box = $("verdict"); box.hidden = false; box.className = "status"; box.textContent = "Exporting…";
    try {
      const r = await fetch(`/api/compliance/sessions/${current.session_id}/export`, { credentials: "same-origin" });
      if (!r.ok) {
        let message = `HTTP ${r.status}`;
        try { const e = (await r.json()).error || {}; message = `${e.message || message} (${e.code || r.status})`; } catch (_) { /* not JSON */ }
        box.className = "status bad"; box.textContent = `Export refused: ${message}`;
        return;
      }
      const blob = await r.blob();
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob); a.download = `evidence-${current.session_id}.zip`;
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      box.className = "status ok"; box.textContent = `Exported evidence-${current.session_id}.zip (${blob.size} bytes).`;
    } catch (e) { box.className = "status bad"; box.textContent = `Export failed: ${e.message}`; }
  };

  $("viewer-close").onclick = () => { $("viewer").hidden = true; };
  start();
})();
