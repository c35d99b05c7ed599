"use strict";
(function () {
  const SCREENS = ["screen-ready", "screen-waiting", "screen-call", "screen-outcome"];
  const $ = (id) => document.getElementById(id);
  const token = location.hash.slice(1);
  let stream = null, pc = null;

  function fail(message) { $("error").textContent = message; $("error").hidden = false; }
  function clearError() { $("error").hidden = true; }
  const MESSAGES = {
    invitation_invalid: "This invitation link is not valid. Please use the link your provider sent you.",
    invitation_expired: "This invitation link has expired. Please ask your provider for a new one.",
    session_in_use: "This identification is already open in another window or device.",
  };

  if (!token) { fail(MESSAGES.invitation_invalid); $("conn").textContent = "not connected"; return; }

  const socket = io("/customer", { auth: { token }, transports: ["websocket"] });
  socket.on("connect", () => { $("conn").textContent = "connected"; clearError(); });
  socket.on("disconnect", () => { $("conn").textContent = "reconnecting…"; });
  socket.on("connect_error", (err) => {
    $("conn").textContent = "not connected";
    const code = err && err.data && err.data.code;
    fail(MESSAGES[code] || (err.data && err.data.message) || "Cannot reach the server; retrying…");
    if (code === "session_in_use") setTimeout(() => socket.connect(), 3000);
  });
  socket.on("error", (e) => fail(e.message || "Something went wrong."));

  socket.on("session", (s) => render(s));
  socket.on("queue", (q) => showQueue(q));
  socket.on("assigned", () => { $("position").textContent = "1"; $("eta").textContent = "any moment now"; });
  socket.on("call_started", (c) => startCall(c));
  socket.on("call_ended", (c) => { endMedia(); $("requeued").hidden = c.reason !== "operator_left"; });
  socket.on("outcome", (o) => showOutcome(o.outcome));

  function render(s) {
    if (["approved", "rejected", "suspended", "certificate_requested", "contract_signed",
         "completed"].includes(s.state)) return showOutcome(s.state);
    if (s.state === "abandoned" || s.state === "expired") return fail(MESSAGES.invitation_expired);
    if (s.state === "waiting" || s.state === "assigned") return showQueue(s);
    videoid.show("screen-ready", SCREENS);
    startCamera();
  }

  async function startCamera() {
    if (stream) return;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
      $("preview").srcObject = stream;
      $("camera-status").textContent = "Your camera and microphone are ready.";
      $("join").disabled = false;
    } catch (e) {
      $("camera-status").textContent = "We cannot use your camera or microphone: " +
        "allow access in your browser's settings, then reload this page.";
    }
  }

  $("join").onclick = async () => {
    $("join").disabled = true;
    try { showQueue(await videoid.request(socket, "join_queue")); }
    catch (e) { fail(e.message); $("join").disabled = false; }
  };
  $("leave").onclick = async () => {
    try { await videoid.request(socket, "leave_queue"); videoid.show("screen-ready", SCREENS); $("join").disabled = false; }
    catch (e) { fail(e.message); }
  };

  function showQueue(q) {
    videoid.show("screen-waiting", SCREENS);
    if (q.position) $("position").textContent = q.position;
    if (q.estimated_wait_seconds !== undefined) {
      const s = q.estimated_wait_seconds;
      $("eta").textContent = s < 60 ? "less than a minute" : `about ${Math.round(s / 60)} min`;
    }
  }

  async function startCall(c) {
    videoid.show("screen-call", SCREENS);
    $("operator-name").textContent = (c.operator && c.operator.display_name) || "an operator";
    await startCamera();
    $("local").srcObject = stream;
    try {
      pc = await videoid.connectMedia(socket, stream, $("remote"), c.ice_servers,
        (state) => { $("media-state").textContent = state === "connected" ? "" : `Video: ${state}`; });
    } catch (e) { fail("The video connection failed: " + (e.message || e.code)); }
  }

  function endMedia() { if (pc) { pc.close(); pc = null; } }

  function showOutcome(outcome) {
    endMedia();
    videoid.show("screen-outcome", SCREENS);
    const text = {
      approved: ["Identification successful", "Thank you. Your identity has been verified."],
      rejected: ["Identification not successful", "We could not verify your identity. Your provider will contact you."],
      suspended: ["Identification under review", "A second reviewer will check your identification. We will let you know the result."],
    }[outcome] || ["Identification finished", ""];
    $("outcome-title").textContent = text[0];
    $("outcome-title").className = "outcome-" + outcome;
    $("outcome-text").textContent = text[1];
    document.body.dataset.outcome = outcome;
    if (stream) for (const t of stream.getTracks()) t.stop();
  }
})();
