// The supervisor's screens: the review of suspended sessions (four-eyes) and the dashboard.
"use strict";
window.videoid = window.videoid || {};
(function () {
  const $ = (id) => document.getElementById(id);
  let current = null, reasons = {}, dashTimer = null;

  function fail(e) { $("error").textContent = (e && e.message) || String(e); $("error").hidden = false; }
  const api = videoid.api;
  const ago = (t) => { const s = Date.now() / 1000 - t; return s < 120 ? `${Math.round(s)} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : new Date(t * 1000).toLocaleString(); };
  const dur = (s) => (s == null ? "–" : s < 90 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} min`);

  // -- tabs -------------------------------------------------------------------------------------

  function showTab(id) {
    $("tabs").dataset.tab = id;
    for (const b of document.querySelectorAll("#tabs .tab")) {
      b.classList.toggle("active", b.dataset.tab === id);
      $(b.dataset.tab).hidden = b.dataset.tab !== id;
    }
    clearInterval(dashTimer);
    if (id === "screen-reviews") loadReviews().catch(fail);
    if (id === "screen-dashboard") { loadDashboard().catch(fail); dashTimer = setInterval(() => loadDashboard(true).catch(() => {}), 5000); }
    if (id === "screen-desk") $("onboarding-home").append($("onboarding"));
  }
  for (const b of document.querySelectorAll("#tabs .tab")) b.onclick = () => showTab(b.dataset.tab);

  // -- reviews ----------------------------------------------------------------------------------

  async function loadReviews(background) {
    const { reviews } = await api("/api/reviews", undefined, background);
    $("review-count").textContent = reviews.length;
    const body = $("reviews"); body.textContent = "";
    for (const r of reviews) {
      const tr = body.insertRow(); tr.dataset.session = r.session_id;
      tr.insertCell().textContent = ago(r.suspended_at);
      tr.insertCell().textContent = r.operator || "–";
      tr.insertCell().textContent = videoid.reasonLabel(r.reason_code || "") + (r.reason_text ? ` — ${r.reason_text}` : "");
      const b = document.createElement("button"); b.className = "small";
      b.textContent = r.own ? "Yours: another supervisor reviews it" : "Open";
      b.disabled = r.own; b.onclick = () => openReview(r.session_id).catch(fail);
      tr.insertCell().append(b);
    }
    if (!reviews.length) { const tr = body.insertRow(); const c = tr.insertCell(); c.colSpan = 4; c.className = "muted"; c.textContent = "Nothing to review."; }
  }

  async function openReview(sessionId) {
    const c = await api(`/api/reviews/${sessionId}`);
    current = sessionId; reasons = c.reasons;
    $("review").hidden = false; $("review-result").hidden = true;
    $("review-session").textContent = sessionId.slice(0, 8);
    const d = $("review-decisions"); d.textContent = "";
    for (const x of c.decisions) {
      const p = document.createElement("p"); p.className = "status";
      p.textContent = `${x.operator}: ${x.outcome} — ${videoid.reasonLabel(x.reason_code)}${x.reason_text ? ` (“${x.reason_text}”)` : ""}, ${new Date(x.at * 1000).toLocaleString()}`;
      d.append(p);
    }
    $("review-onboarding").append($("onboarding"));
    await videoid.showOnboarding(sessionId);
    videoid.callTools.renderRecord(c.call, sessionId, $("review-call"));
    videoid.fillReasons($("review-reason"), reasons, ["approved", "rejected"]);
    for (const b of ["review-approve", "review-reject"]) $(b).disabled = false;
    $("review").scrollIntoView();
  }

  for (const id of ["review-approve", "review-reject"]) {
    $(id).onclick = async (ev) => {
      const outcome = ev.target.dataset.outcome;
      let reason = $("review-reason").value;
      if (!(reasons[outcome] || []).includes(reason)) reason = reasons[outcome][0];
      for (const b of ["review-approve", "review-reject"]) $(b).disabled = true;
      try {
        // a decision needs a recent second-factor proof: asked for here, then sent again
        const r = await videoid.withReauth(api, () => api(`/api/reviews/${current}/decision`,
          { outcome, reason_code: reason, reason_text: $("review-text").value }));
        $("review-result").hidden = false; $("review-result").className = "status ok";
        $("review-result").textContent = `Decision saved: ${r.state} (${videoid.reasonLabel(reason)}).`;
        $("review-text").value = "";
        await loadReviews();
      } catch (e) { fail(e); for (const b of ["review-approve", "review-reject"]) $(b).disabled = false; }
    };
  }

  // -- dashboard --------------------------------------------------------------------------------

  function bars(canvas, labels, values, colors, title) {
    const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#1b1f24"; ctx.font = "14px system-ui, sans-serif"; ctx.fillText(title, 4, 16);
    const max = Math.max(1, ...values), n = values.length, gap = 4;
    const bw = (w - 8) / n - gap, base = h - 22;
    ctx.font = "11px system-ui, sans-serif";
    values.forEach((v, i) => {
      const x = 4 + i * (bw + gap), bh = (base - 30) * v / max;
      ctx.fillStyle = colors[i % colors.length]; ctx.fillRect(x, base - bh, bw, bh);
      ctx.fillStyle = "#5b6570";
      if (labels[i] !== "") ctx.fillText(labels[i], x, h - 6);
      if (v) { ctx.fillStyle = "#1b1f24"; ctx.fillText(String(v), x, base - bh - 4); }
    });
  }

  // background: a refresh nobody asked for, which does not count as using the login
  // (operators.idle_minutes)
  async function loadDashboard(background) {
    const d = await api("/api/dashboard", undefined, background);
    const now = d.now, today = d.today;
    $("dash-waiting").textContent = now.waiting;
    $("dash-longest").textContent = dur(now.longest_wait_seconds);
    $("dash-calls").textContent = now.calls;
    $("dash-reviews").textContent = now.reviews;
    $("review-count").textContent = now.reviews;
    const body = $("dash-operators"); body.textContent = "";
    for (const o of now.operators) {
      const tr = body.insertRow(); tr.dataset.operator = o.username;
      tr.insertCell().textContent = o.username; tr.insertCell().textContent = o.role;
      const c = tr.insertCell(); const pill = document.createElement("span"); pill.className = "pill " + o.presence; pill.textContent = o.presence; c.append(pill);
      tr.insertCell().textContent = o.session_id ? o.session_id.slice(0, 8) : "";
    }
    $("dash-handled").textContent = today.handled;
    $("dash-wait").textContent = dur(today.average_wait_seconds);
    $("dash-handle").textContent = dur(today.average_handle_seconds);
    const o = today.outcomes, rate = (k) => (today.rates[k] == null ? "" : ` ${Math.round(today.rates[k] * 100)}%`);
    bars($("dash-outcomes"), [`approved${rate("approved")}`, `rejected${rate("rejected")}`, `suspended${rate("suspended")}`],
      [o.approved, o.rejected, o.suspended], ["#17803d", "#b3261e", "#a15c00"], "Outcomes today");
    bars($("dash-hours"), today.calls_by_hour.map((_, h) => (h % 3 === 0 ? String(h) : "")), today.calls_by_hour, ["#0b5cad"], "Calls by hour today");
  }

  videoid.supervisor = {
    start(socket) {
      if (videoid.supervisor.started) return;
      videoid.supervisor.started = true;
      socket.on("reviews_changed", () => loadReviews(true).catch(() => {}));
      socket.on("queue_snapshot", () => { if ($("tabs").dataset.tab === "screen-dashboard") loadDashboard(true).catch(() => {}); });
      loadReviews(true).catch(() => {});
    },
    started: false,
  };
})();
