// The operator's tools in a call: live signals, challenges, snapshots (zoom, side by side
// with the document portrait), freeze-frame, the checklist, the SMS code read-back, chat,
// and the customer's reconnects. Also renders a finished call's record for the review.
"use strict";
window.videoid = window.videoid || {};
(function () {
  const $ = (id) => document.getElementById(id);
  const FLAGS = {
    no_face: "No face", several_faces: "Several faces", face_small: "Face too small",
    too_dark: "Too dark", too_bright: "Too bright", blurry: "Blurry", low_resolution: "Low resolution",
    low_frame_rate: "Low frame rate", virtual_camera: "Virtual camera", resolution_changed: "Resolution changed",
    frame_rate_changed: "Frame rate changed", timestamps_too_regular: "Timestamps too regular (file?)",
    frames_frozen: "Picture frozen", frames_repeat: "Pictures repeat (loop?)", no_blink: "No blink",
    no_motion: "No movement", face_mismatch_document: "Face ≠ document", face_mismatch_selfie: "Face ≠ selfie",
  };
  const BAD = ["several_faces", "virtual_camera", "frames_repeat", "frames_frozen", "face_mismatch_document",
    "face_mismatch_selfie", "no_face"];
  const CHALLENGES = [["turn_left", "Turn left"], ["turn_right", "Turn right"], ["look_up", "Look up"],
    ["blink_twice", "Blink twice"], ["smile", "Smile"], ["document_close", "Document close"]];
  const CH_LABEL = Object.fromEntries(CHALLENGES);
  let socket = null, sessionId = null, checklist = null, clock = null, onChange = () => {};

  function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
  function fail(e) { $("error").textContent = (e && e.message) || String(e); $("error").hidden = false; }
  function ask(event, payload) { return videoid.request(socket, event, payload).catch((e) => { fail(e); throw e; }); }
  const fmt = (v, d = 1) => (typeof v === "number" ? v.toFixed(d) : "–");

  // -- signals ----------------------------------------------------------------------------------

  function flagPills(target, flags) {
    target.textContent = "";
    for (const f of flags) {
      const s = el("span", "flag" + (BAD.includes(f) ? " bad" : ""), FLAGS[f] || f);
      s.dataset.flag = f; target.append(s);
    }
  }

  function renderSignals(s) {
    const body = $("sig-table").tBodies[0]; body.textContent = "";
    const row = (k, v, key) => { const r = body.insertRow(); r.insertCell().textContent = k; const c = r.insertCell(); c.textContent = v; if (key) r.dataset.signal = key; };
    const f = s.face;
    row("Faces", s.faces == null ? "–" : String(s.faces), "faces");
    for (const name of ["document", "selfie"]) {
      const m = s.match[name];
      if (m) row(`Face vs ${name}`, `${m.match ? "✓ same person" : "✗ NOT the same"} (distance ${fmt(m.distance, 3)})`, "match_" + name);
    }
    row("Blinks", String(s.blinks), "blinks");
    row("Head (yaw/pitch/roll)", f ? `${fmt(f.yaw)}° / ${fmt(f.pitch)}° / ${fmt(f.roll)}°` : "–", "pose");
    row("Eyes / mouth", f ? `eyes ${fmt(f.ear, 2)}, mouth ${s.mouth_moving ? "moving" : "still"}` : "–", "eyes");
    const q = s.quality;
    row("Picture", `${q.width || "?"}×${q.height || "?"} at ${fmt(q.fps)} fps, light ${fmt(q.brightness, 0)}, sharpness ${fmt(q.sharpness, 0)}`, "quality");
    row("Camera", s.injection.camera_label || "(not reported)", "camera");
    flagPills($("sig-flags"), s.flags);
    const delay = Date.now() / 1000 - s.frame_at;
    $("sig-delay").textContent = delay >= 0 && delay < 60 ? `${Math.round(delay * 1000)} ms behind` : "";
    const box = $("face-box");
    if (f && f.box) {
      box.hidden = false;
      Object.assign(box.style, { left: f.box[0] * 100 + "%", top: f.box[1] * 100 + "%", width: f.box[2] * 100 + "%", height: f.box[3] * 100 + "%" });
    } else box.hidden = true;
  }

  // -- challenges -------------------------------------------------------------------------------

  function renderChallenges(c) {
    const cur = $("challenge-current");
    cur.hidden = !c.current;
    if (c.current) {
      const left = Math.max(0, Math.round(c.current.deadline - Date.now() / 1000));
      cur.textContent = `Now: ${CH_LABEL[c.current.kind]} (${left} s)` + (c.pending.length ? ` — then ${c.pending.map((k) => CH_LABEL[k]).join(", ")}` : "");
    }
    const list = $("challenge-list"); list.textContent = "";
    for (const d of c.done.slice().reverse()) {
      const li = el("li", d.result === "passed" ? "check-ok" : "check-bad",
        `${CH_LABEL[d.kind]}: ${d.result}` + (d.evidence ? ` (${Object.entries(d.evidence).map(([k, v]) => `${k} ${v}`).join(", ")})` : ""));
      li.dataset.kind = d.kind; li.dataset.result = d.result; list.append(li);
    }
  }

  // -- snapshots --------------------------------------------------------------------------------

  function addSnapshot(s, session) {
    const fig = el("figure");
    const img = el("img");
    img.src = `/api/sessions/${session}/snapshots/${s.object}`; img.alt = s.kind; img.dataset.kind = s.kind;
    img.onclick = () => videoid.openViewer(img.src);
    fig.append(img, el("figcaption", null, `${s.kind.replace("_", " ")} ${new Date(s.at * 1000).toLocaleTimeString()}`));
    return fig;
  }

  // -- checklist --------------------------------------------------------------------------------

  function renderChecklist(view, readonly) {
    checklist = view;
    const list = $("checklist-items"); list.textContent = "";
    for (const item of view.items) {
      const li = el("li", "check-item"); li.dataset.item = item.id;
      let text = item.text;
      if (item.kind === "random_action") text += `: “${item.action}”`;
      if (item.kind === "security_feature" && item.optically_variable) text += " (optically variable: tilt it)";
      const label = el("span", null, text + (item.mandatory ? "" : " (optional)"));
      li.append(label);
      if (item.kind === "date_time") li.append(el("span", "muted clock", " — now " + new Date().toLocaleString()));
      const a = item.answer;
      if (a) {
        li.append(el("span", a.answer === "passed" ? "check-ok" : "check-bad", ` ${a.answer === "passed" ? "✓" : "✗"} ${a.answer}${a.note ? " — " + a.note : ""}`));
        li.dataset.answer = a.answer;
      } else if (!readonly) {
        // the code's item passes only when the code matches; the operator may fail it
        const choices = item.kind === "otp" ? [["failed", "✗", "bad"]] : [["passed", "✓", "ok"], ["failed", "✗", "bad"]];
        if (item.kind === "otp") li.append(el("span", "muted", " — passes when the code matches"));
        // "snapshot taken": the server passes it only with a snapshot of its kind; the
        // tick takes one now (the document is being shown) unless one was taken already
        if (item.snapshot) li.append(el("span", "muted", ` — ✓ takes the ${item.snapshot.replace("_", " ")} snapshot if there is none yet`));
        for (const [answer, label2, cls] of choices) {
          const b = el("button", "small " + cls, label2);
          b.title = answer; b.dataset.answer = answer;
          b.onclick = async () => {
            b.disabled = true;
            try {
              if (answer === "passed" && item.snapshot && !document.querySelector(`#snap-thumbs img[data-kind="${item.snapshot}"]`)) {
                // a server without live analysis takes no snapshots (and asks for none):
                // a refusal here is left to the answer's own
                const s = await videoid.request(socket, "snapshot", { kind: item.snapshot }).catch(() => null);
                if (s) $("snap-thumbs").prepend(addSnapshot(s, sessionId));
              }
              let r;
              try { r = await videoid.request(socket, "checklist_answer", { item: item.id, answer }); }
              catch (e) {
                // not saved (storage_full, …): the item stays unanswered, and the message
                // names what was not saved, so that it is given again
                fail({ message: `Not saved: “${item.text}” ${answer}. ${e.message || e.code}` });
                li.querySelector(".unsaved")?.remove();
                const note = el("span", "check-bad unsaved", " — not saved, answer again"); note.dataset.error = e.code || "";
                li.append(note);
                return;
              }
              renderChecklist(r, false);
            } finally { b.disabled = false; }
          };
          li.append(b);
        }
      }
      list.append(li);
    }
    onChange(view);
  }

  // -- chat -------------------------------------------------------------------------------------

  function addChat(m) {
    const p = el("p", "chat-" + m.from, (m.from === "customer" ? "Customer: " : "You: ") + m.text);
    $("chat-log").append(p); $("chat-log").scrollTop = $("chat-log").scrollHeight;
  }

  // -- wiring -----------------------------------------------------------------------------------

  const buttons = $("challenge-buttons");
  for (const [kind, label] of CHALLENGES) {
    const b = el("button", "small", label); b.dataset.challenge = kind;
    b.onclick = async () => renderChallenges(await ask("challenge", { kinds: [kind] }));
    buttons.append(b);
  }
  $("challenge-random").onclick = async () => renderChallenges(await ask("challenge", { random: 3 }));
  for (const b of document.querySelectorAll("[data-snap]")) {
    b.onclick = async () => {
      b.disabled = true;
      try { const s = await ask("snapshot", { kind: b.dataset.snap }); $("snap-thumbs").prepend(addSnapshot(s, sessionId)); }
      finally { b.disabled = false; }
    };
  }
  $("freeze").onclick = () => {
    const v = $("remote");
    if (v.paused) { v.play().catch(() => {}); $("freeze").textContent = "Freeze"; }
    else { v.pause(); $("freeze").textContent = "Live again"; }
  };
  $("compare").onclick = async () => {
    const s = await ask("snapshot", { kind: "face" });
    $("snap-thumbs").prepend(addSnapshot(s, sessionId));
    videoid.openViewer(`/api/sessions/${sessionId}/images/portrait`, `/api/sessions/${sessionId}/snapshots/${s.object}`);
  };
  $("otp-send").onclick = async () => {
    const r = await ask("otp_send");
    $("otp-status").hidden = false; $("otp-status").className = "status";
    $("otp-status").textContent = `Code sent to ${r.sent_to}; valid until ${new Date(r.expires_at * 1000).toLocaleTimeString()}. Ask the customer to read it.`;
    $("otp-code").focus();
  };
  $("otp-check").onclick = async () => {
    const st = $("otp-status"); st.hidden = false;
    try {
      const r = await videoid.request(socket, "otp_check", { code: $("otp-code").value.trim() });
      st.className = "status ok"; st.textContent = "✓ The code matches."; st.dataset.result = "matched";
      renderChecklist(r.checklist, false);
    } catch (e) { st.className = "status bad"; st.textContent = "✗ " + e.message; st.dataset.result = e.code; }
    $("otp-code").value = "";
  };
  $("chat-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const text = $("chat-text").value.trim(); if (!text) return;
    const m = await ask("chat", { text }); $("chat-text").value = ""; addChat(m);
  };

  videoid.callTools = {
    async start(sock, session, changed) {
      socket = sock; sessionId = session; onChange = changed || (() => {});
      for (const id of ["sig-flags", "challenge-list", "snap-thumbs", "chat-log"]) $(id).textContent = "";
      $("sig-table").tBodies[0].textContent = ""; $("challenge-current").hidden = true;
      $("otp-status").hidden = true; $("reconnect").hidden = true; $("face-box").hidden = true;
      $("rec-failed").hidden = true; $("sig-unavailable").hidden = true;
      $("freeze").textContent = "Freeze";
      const view = await ask("call_view");
      if (view.recording_failed) $("rec-failed").hidden = false;
      renderChecklist(view.checklist, false);
      for (const s of view.snapshots) $("snap-thumbs").prepend(addSnapshot(s, session));
      for (const m of view.chat) addChat(m);
      clearInterval(clock);
      clock = setInterval(() => {
        for (const c of document.querySelectorAll("#checklist-items .clock")) c.textContent = " — now " + new Date().toLocaleString();
      }, 1000);
    },
    stop() { clearInterval(clock); socket = null; sessionId = null; checklist = null; },
    answered() { return !!(checklist && checklist.complete); },
    complete() { return !!(checklist && checklist.complete && !checklist.items.some((i) => i.mandatory && i.answer && i.answer.answer === "failed")); },
    listen(sock) {
      sock.on("signals", (s) => { if (s.session_id === sessionId) { $("sig-unavailable").hidden = true; renderSignals(s); } });
      sock.on("signals_unavailable", (s) => { if (s.session_id === sessionId) $("sig-unavailable").hidden = false; });
      sock.on("recording_failed", (s) => { if (s.session_id === sessionId) $("rec-failed").hidden = false; });
      sock.on("challenge", (c) => { if (c.session_id === sessionId) renderChallenges(c); });
      sock.on("chat", (m) => { if (m.session_id === sessionId) addChat(m); });
      sock.on("customer_reconnecting", (r) => {
        if (r.session_id !== sessionId) return;
        $("reconnect").hidden = false; $("reconnect").className = "status bad";
        $("reconnect").textContent = `The customer's connection dropped; keeping the call for ${Math.round(r.seconds)} s while they reconnect.`;
      });
      sock.on("customer_back", (r) => {
        if (r.session_id !== sessionId) return;
        $("reconnect").className = "status ok";
        $("reconnect").textContent = `The customer is back after ${r.seconds.toFixed(1)} s (the gap is recorded).`;
      });
    },
    // a finished call, read only (the supervisor's review)
    renderRecord(view, session, target) {
      target.textContent = "";
      const h = (t) => target.append(el("h3", null, t));
      h("Snapshots");
      const thumbs = el("div", "thumbs");
      for (const s of view.snapshots) thumbs.append(addSnapshot(s, session));
      if (!view.snapshots.length) thumbs.append(el("p", "muted", "None."));
      target.append(thumbs);
      h("Checklist");
      const ol = el("ol");
      for (const i of view.checklist.items) {
        const a = i.answer;
        const li = el("li", a ? (a.answer === "passed" ? "check-ok" : "check-bad") : "muted",
          `${i.text}${i.action ? `: “${i.action}”` : ""} — ${a ? a.answer + (a.note ? ` (${a.note})` : "") : "not done"}`);
        li.dataset.item = i.id; ol.append(li);
      }
      target.append(ol);
      const an = view.analysis;
      h("Live signals at the end of the call");
      if (an) {
        const p = el("p", null, `${an.analysed_frames} frames analysed, ${an.signals.blinks} blinks.`);
        target.append(p);
        const flags = el("div"); flagPills(flags, an.signals.flags); target.append(flags);
        const ul = el("ul");
        for (const c of an.challenges) ul.append(el("li", c.result === "passed" ? "check-ok" : "check-bad", `${CH_LABEL[c.kind] || c.kind}: ${c.result}`));
        target.append(ul);
      } else target.append(el("p", "muted", "No analysis."));
      h("SMS code");
      target.append(el("p", null, view.otp.length ? view.otp.map((e) => e.event).join(" → ") : "Not used."));
      h("Chat");
      const log = el("div", "chat-log");
      for (const m of view.chat) log.append(el("p", "chat-" + m.from, `${m.from}: ${m.text}`));
      if (!view.chat.length) log.append(el("p", "muted", "No messages."));
      target.append(log);
    },
  };
})();
