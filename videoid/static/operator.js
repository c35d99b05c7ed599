"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const LABELS = {
    identity_verified: "Identity verified", document_invalid: "Document not valid",
    face_mismatch: "Face does not match", suspected_fraud: "Suspected fraud",
    liveness_failed: "Liveness checks failed", otp_failed: "SMS code not confirmed",
    poor_quality: "Picture or sound inadequate", customer_withdrew: "Customer withdrew",
    needs_review: "Needs a second review", technical_issue: "Technical issue",
    document_unclear: "Document features unclear",
  };
  let REASONS = {};
  // why a call ended, said plainly (the server's call_ended reasons)
  const CALL_ENDED = {
    customer_left: "The customer left the call.",
    customer_gone: "The customer did not join the call in time. The session went back to them; nobody is waiting for you.",
  };
  let socket = null, presence = "paused", offered = null, countdown = null, inCall = null;
  let pc = null, stream = null;

  function fail(message) { $("error").textContent = message; $("error").hidden = false; }
  function clearError() { $("error").hidden = true; }

  // the provider's reason codes, grouped by outcome (from the server's hello)
  videoid.reasonLabel = (code) => LABELS[code] || code.replace(/_/g, " ");
  videoid.fillReasons = function (select, reasons, outcomes) {
    select.textContent = "";
    for (const outcome of outcomes) {
      const group = document.createElement("optgroup");
      group.label = outcome;
      for (const code of reasons[outcome] || []) group.appendChild(new Option(videoid.reasonLabel(code), code));
      select.appendChild(group);
    }
  };

  const api = videoid.api;

  const ENDED = { login_expired: "Your login ended after a time unused: log in again.",
    revoked: "Your login was ended (account changed by a supervisor): log in again." };

  async function start() {
    try { const me = await api("/api/operator/me"); connect(me.operator); }
    catch (e) {
      $("screen-login").hidden = false;
      const ended = new URLSearchParams(location.search).get("ended");
      if (ENDED[ended]) fail(ENDED[ended]);
    }
  }

  // the password, then a code (an authenticator enrolled at the first login)
  videoid.staffLogin(api, fail, clearError, (r) => connect(r.operator));

  $("logout").onclick = async () => { await api("/api/operator/logout", {}); location.reload(); };

  function connect(operator) {
    if (operator.role === "compliance") { location.href = "/compliance"; return; }  // their own console
    $("screen-login").hidden = true;
    $("who").textContent = `${operator.username} (${operator.role})`;
    $("logout").hidden = false;
    socket = io("/operator", { transports: ["websocket"] });
    socket.on("connect", () => { clearError(); });
    socket.on("connect_error", (err) => {
      const code = err && err.data && err.data.code;
      if (code === "unauthorized") { location.reload(); return; }
      fail((err.data && err.data.message) || "Cannot reach the server; retrying…");
      if (code === "session_in_use") setTimeout(() => socket.connect(), 3000);
    });
    socket.on("disconnect", () => { setPresence("offline"); if (inCall) endCall("Connection lost."); });
    socket.on("error", (e) => fail(e.message));
    // the server ended the login (unused too long, or a supervisor's change): to the login
    socket.on("login_ended", (e) => { location.replace(`/operator?ended=${encodeURIComponent(e.reason)}`); });
    videoid.keepAlive(api);
    socket.on("hello", (h) => {
      REASONS = h.reasons || {};
      videoid.fillReasons($("reason"), REASONS, ["approved", "rejected", "suspended"]);
      if (!$("tabs").dataset.tab) $("screen-desk").hidden = false;
      setPresence(h.presence); renderQueue(h.queue);
      if (operator.role === "supervisor") { $("tabs").hidden = false; videoid.supervisor.start(socket); }
    });
    videoid.callTools.listen(socket);
    socket.on("queue_snapshot", renderQueue);
    socket.on("assignment_offered", showOffer);
    socket.on("assignment_withdrawn", (w) => { hideOffer(); if (w.presence) setPresence(w.presence);
      $("last-decision").hidden = false;
      $("last-decision").textContent = w.reason === "customer_left" ? "The customer left the queue." :
        w.reason === "offer_timeout" ? "The offer timed out; you are paused." : "Offer withdrawn."; });
    socket.on("call_ended", (ended) => {
      const reason = (ended && ended.reason) || "";
      endCall(CALL_ENDED[reason] || "The call has ended.");
      $("last-decision").dataset.reason = reason;
    });
  }

  function setPresence(p) {
    presence = p;
    $("presence").hidden = false; $("presence").textContent = p; $("presence").className = "pill " + p;
    $("toggle-presence").hidden = p === "offline";
    $("toggle-presence").textContent = p === "available" ? "Pause" : "Go available";
    $("toggle-presence").disabled = p === "busy" || p === "offered";
  }

  $("toggle-presence").onclick = async () => {
    try { const r = await videoid.request(socket, "set_presence", { status: presence === "available" ? "paused" : "available" });
      setPresence(r.presence); } catch (e) { fail(e.message); }
  };

  function renderQueue(q) {
    $("waiting-count").textContent = q.waiting.length;
    const body = $("queue"); body.textContent = "";
    for (const w of q.waiting) {
      const tr = body.insertRow();
      tr.insertCell().textContent = w.position;
      tr.insertCell().textContent = Math.round(w.waiting_seconds) + " s";
    }
    const o = q.operators || {};
    $("operators").textContent = `Operators: ${o.available || 0} available, ${o.busy || 0} in call, ${o.paused || 0} paused`;
  }

  function showOffer(o) {
    offered = o.session_id; setPresence("offered");
    $("idle").hidden = true; $("offer").hidden = false; $("last-decision").hidden = true;
    let left = Math.round(o.timeout_seconds);
    $("offer-countdown").textContent = left;
    clearInterval(countdown);
    countdown = setInterval(() => { left -= 1; $("offer-countdown").textContent = Math.max(0, left); }, 1000);
  }
  function hideOffer() { clearInterval(countdown); offered = null; $("offer").hidden = true; if (!inCall) $("idle").hidden = false; }

  $("accept").onclick = async () => {
    const sessionId = offered;
    $("accept").disabled = true;
    try {
      const r = await videoid.request(socket, "accept", { session_id: sessionId });
      hideOffer(); inCall = sessionId; setPresence("busy");
      $("idle").hidden = true; $("call").hidden = false; $("call-session").textContent = sessionId.slice(0, 8);
      for (const b of ["approve", "reject", "suspend"]) $(b).disabled = true;
      $("approve-hint").hidden = false;
      try { stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true }); }
      catch (e) { stream = new MediaStream(); fail("Your camera is not available; the customer will not see you."); }
      $("local").srcObject = stream;
      $("onboarding-home").append($("onboarding"));
      videoid.showOnboarding(sessionId).catch((e) => fail(e.message || "Cannot load the onboarding data."));
      videoid.callTools.start(socket, sessionId, gateDecisions).catch(() => {});
      pc = await videoid.connectMedia(socket, stream, $("remote"), r.ice_servers,
        (state) => { $("media-state").textContent = state === "connected" ? "" : `Video: ${state}`; });
    } catch (e) { fail(e.message || e.code); hideOffer(); }
    finally { $("accept").disabled = false; }
  };
  $("decline").onclick = async () => {
    try { const r = await videoid.request(socket, "decline", { session_id: offered }); hideOffer(); setPresence(r.presence); }
    catch (e) { fail(e.message); }
  };

  for (const id of ["approve", "reject", "suspend"]) {
    $(id).onclick = async (ev) => {
      const outcome = ev.target.dataset.outcome;
      let reason = $("reason").value;
      if (!(REASONS[outcome] || []).includes(reason)) reason = (REASONS[outcome] || [""])[0];
      for (const b of ["approve", "reject", "suspend"]) $(b).disabled = true;
      try {
        // a decision needs a recent second-factor proof: asked for here, then sent again
        await videoid.withReauth(api, () => videoid.request(socket, "decide", { session_id: inCall,
          outcome, reason_code: reason, reason_text: $("reason-text").value }));
        endCall(`Decision saved: ${outcome} (${reason}).`);
      } catch (e) { fail(e.message); gateDecisions(); }
    };
  }

  // every decision waits for the checklist's mandatory items; approval, for none failed
  function gateDecisions() {
    const answered = videoid.callTools.answered(), passed = videoid.callTools.complete();
    for (const b of ["reject", "suspend"]) $(b).disabled = !answered;
    $("approve").disabled = !passed;
    $("approve-hint").hidden = answered;
  }

  function endCall(message) {
    videoid.callTools.stop();
    if (pc) { pc.close(); pc = null; }
    if (stream) { for (const t of stream.getTracks()) t.stop(); stream = null; }
    inCall = null; $("call").hidden = true; $("onboarding").hidden = true; $("idle").hidden = false; $("reason-text").value = "";
    $("last-decision").hidden = false; $("last-decision").textContent = message;
    if (socket && socket.connected) videoid.request(socket, "set_presence", { status: presence === "busy" ? "available" : presence })
      .then((r) => setPresence(r.presence)).catch(() => {});
  }

  start();
})();
