// The customer's pages: onboarding steps, queue, call and outcome (docs/protocol.md).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const t = videoid.t, say = videoid.say;
  const SCREENS = ["screen-welcome", "screen-consent", "screen-document", "screen-data",
    "screen-selfie", "screen-avtest", "screen-ready", "screen-handover", "screen-waiting",
    "screen-call", "screen-outcome"];
  const PRE = ["created", "consented", "documents_captured", "data_confirmed", "selfie_taken", "av_tested"];
  const STEPS = { consented: "consent", documents_captured: "document", data_confirmed: "data",
    selfie_taken: "selfie", av_tested: "avtest" };
  const DECIDED = ["approved", "rejected", "suspended", "certificate_requested", "contract_signed", "completed"];
  const LANG_COUNTRY = { it: "ITA", ro: "ROU", pl: "POL" };

  let token = "", socket = null, overview = null, state = null, screen = null, welcomed = false;
  let stream = null, pc = null, handedOver = false;

  // -- messages ----------------------------------------------------------------------

  function fail(keyOrErr, vars) {
    const el = $("error");
    say(el, typeof keyOrErr === "string" ? keyOrErr : videoid.errorKey(keyOrErr), vars);
    el.hidden = false;
    el.scrollIntoView({ block: "nearest" });
  }
  function clearError() { $("error").hidden = true; }
  function advise(key) { const el = $("advice"); if (key) say(el, key); el.hidden = !key; }

  // -- the server ----------------------------------------------------------------------

  async function api(method, path, body) {
    let response;
    try {
      const headers = { "Content-Type": "application/json" };
      if (token) headers.Authorization = "Bearer " + token;
      response = await fetch(path, {
        method, headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) { throw { code: "network" }; }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw Object.assign({ status: response.status }, data.error || { code: "unknown" });
    return data;
  }

  // A photo as the raw body, with upload progress; resolves {status, body}.
  function upload(path, blob, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      xhr.setRequestHeader("Authorization", "Bearer " + token);
      xhr.setRequestHeader("Content-Type", blob.type || "application/octet-stream");
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(Math.round(100 * e.loaded / e.total)); };
      xhr.upload.onload = () => onProgress(100, true);
      xhr.onload = () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        resolve({ status: xhr.status, body });
      };
      xhr.onerror = () => reject({ code: "network" });
      xhr.send(blob);
    });
  }

  function tooLarge(blob) {
    return overview && blob.size > overview.max_upload_bytes;
  }

  // -- languages -----------------------------------------------------------------------

  for (const [code, name] of Object.entries(videoid.LANGUAGES)) {
    const option = document.createElement("option");
    option.value = code; option.textContent = name;
    $("lang").append(option);
  }
  $("lang").value = videoid.lang;
  $("lang").onchange = () => {
    videoid.setLanguage($("lang").value);
    fillCountries();
    if (screen === "screen-consent") showConsent();
    renderStepper();
  };
  videoid.applyTexts();

  function countryName(entry) {
    if (!entry.alpha2) return t("country_" + entry.code);
    try { return new Intl.DisplayNames([videoid.lang], { type: "region" }).of(entry.alpha2); }
    catch (e) { return entry.code; }
  }

  function fillCountries() {
    if (!overview) return;
    const entries = overview.countries.map((c) => [c.code, countryName(c)])
      .sort((a, b) => a[1].localeCompare(b[1], videoid.lang));
    for (const select of [$("doc-country"), $("f-nationality")]) {
      const value = select.value || select.dataset.want || "";
      select.textContent = "";
      select.append(new Option("", ""));
      for (const [code, name] of entries) select.append(new Option(name, code));
      if (value && ![...select.options].some((o) => o.value === value)) select.append(new Option(value, value));
      select.value = value;
    }
  }

  // -- where the customer is -----------------------------------------------------------

  function requiredSteps() { return (overview && overview.required_steps) || []; }

  // The next pre-call step to do, or "ready" when the queue is open.
  function nextStep() {
    const at = PRE.indexOf(state);
    for (const step of requiredSteps()) if (PRE.indexOf(step) > at) return STEPS[step];
    return "ready";
  }

  function renderStepper() {
    const list = $("stepper");
    const steps = requiredSteps().map((s) => STEPS[s]);
    list.hidden = steps.length === 0;
    list.textContent = "";
    const current = PRE.includes(state) ? nextStep() : "call";
    const order = [...steps, "call"];
    const at = order.indexOf(current === "ready" ? "call" : current);
    order.forEach((step, i) => {
      const li = say(document.createElement("li"), "step_" + step);
      li.className = i < at ? "done" : i === at ? "current" : "";
      if (i === at) li.setAttribute("aria-current", "step");
      list.append(li);
    });
    const welcome = $("welcome-steps");
    welcome.textContent = "";
    for (const step of order) welcome.append(say(document.createElement("li"), "step_" + step));
  }

  function show(id) {
    if (id !== screen) clearError();
    screen = id;
    videoid.show(id, SCREENS);
    const phone = !handedOver && PRE.includes(state) && id !== "screen-handover" && id !== "screen-ready"
      && !matchMedia("(pointer: coarse)").matches;
    $("phone-offer").hidden = !phone;
    if (!["screen-selfie", "screen-avtest", "screen-ready"].includes(id) && id !== "screen-call") stopStream();
  }

  // One routing at a time: the page's own calls and the server's "state" events both route.
  let routing = Promise.resolve();
  function route() { routing = routing.then(doRoute, doRoute); return routing; }

  const SCREEN_OF = { consent: "screen-consent", document: "screen-document", data: "screen-data",
    selfie: "screen-selfie", avtest: "screen-avtest", ready: "screen-ready" };

  async function doRoute() {
    if (handedOver) return;
    if (DECIDED.includes(state)) return showOutcome(state);
    if (state === "abandoned" || state === "expired") return fail("err_invitation_expired");
    if (state === "waiting" || state === "assigned") return showQueue({});
    if (state === "in_call") return;
    try { overview = await api("GET", "/api/onboarding"); }
    catch (e) { return fail(e); }
    state = overview.state;
    if (!PRE.includes(state)) return doRoute();
    fillCountries();
    renderStepper();
    const step = nextStep();
    if (step === "consent" && !welcomed) return show("screen-welcome");
    if (SCREEN_OF[step] === screen) return;  // already there
    ({ consent: showConsent, document: showDocument, data: showData, selfie: showSelfie,
       avtest: showAvTest, ready: showReady })[step]();
  }

  $("start").onclick = () => { welcomed = true; route(); };

  function handleStepError(e) {
    if (e.code === "step_not_allowed") { fail(e); return route(); }
    fail(e, e.code === "file_too_large" && overview ? { mb: Math.floor(overview.max_upload_bytes / 1e6) } : undefined);
  }

  // -- consent ---------------------------------------------------------------------------

  async function showConsent() {
    show("screen-consent");
    const box = $("consent-docs");
    let docs;
    try { docs = (await api("GET", "/api/onboarding/consent?lang=" + videoid.lang)).documents; }
    catch (e) { return fail(e); }
    box.textContent = "";
    for (const doc of docs) {
      const block = document.createElement("div");
      block.className = "consent-doc";
      const text = document.createElement("div");
      text.className = "consent-text"; text.tabIndex = 0; text.textContent = doc.text;
      const version = say(document.createElement("p"), "version", { v: doc.version });
      version.className = "muted";
      const label = document.createElement("label");
      label.className = "check";
      const box2 = document.createElement("input");
      box2.type = "checkbox"; box2.id = "consent-" + doc.document;
      box2.dataset.document = doc.document; box2.dataset.version = doc.version;
      box2.onchange = consentReady;
      label.append(box2, say(document.createElement("span"), "consent_" + doc.document));
      block.append(text, version, label);
      box.append(block);
    }
    consentReady();
  }

  function consentReady() {
    const boxes = [...document.querySelectorAll("#consent-docs input[type=checkbox]")];
    $("consent-submit").disabled = !boxes.length || !boxes.every((b) => b.checked);
  }

  $("consent-submit").onclick = async () => {
    const accepted = [...document.querySelectorAll("#consent-docs input:checked")]
      .map((b) => ({ document: b.dataset.document, version: b.dataset.version }));
    $("consent-submit").disabled = true;
    try { await api("POST", "/api/onboarding/consent", { language: videoid.lang, accepted }); route(); }
    catch (e) { handleStepError(e); consentReady(); }
  };

  // -- document --------------------------------------------------------------------------

  const accepted = {};  // side → true, for the document being captured

  function showDocument() {
    show("screen-document");
    const doc = overview.document;
    const country = doc.country || $("doc-country").value || LANG_COUNTRY[videoid.lang] || "";
    $("doc-country").value = country;
    if (doc.type) $("doc-type").value = doc.type;
    for (const side of Object.keys(accepted)) delete accepted[side];
    for (const side of doc.captured || []) accepted[side] = true;
    renderSides();
  }

  function renderSides() {
    const type = $("doc-type").value;
    const sides = overview.document_types[type].sides;
    const box = $("doc-sides");
    box.textContent = "";
    for (const side of sides) {
      const node = $("side-template").content.firstElementChild.cloneNode(true);
      node.id = "side-" + side;
      say(node.querySelector(".side-title"), type === "passport" ? "side_front_passport" : "side_" + side);
      node.querySelector(".side-file").onchange = (e) => {
        const file = e.target.files[0];
        e.target.value = "";
        if (file) uploadDocument(side, file);
      };
      node.querySelector(".side-camera").onclick = () => openDocumentCamera(side);
      if (accepted[side]) say(sideStatus(side, "ok"), "photo_ok");
      box.append(node);
    }
    videoid.applyTexts(box);
    docReady();
  }

  function sideStatus(side, kind) {
    const el = document.querySelector(`#side-${side} .side-status`);
    el.hidden = false;
    el.className = "side-status status " + (kind || "");
    el.textContent = "";
    delete el.dataset.i18n;
    return el;
  }

  function docReady() {
    const sides = overview.document_types[$("doc-type").value].sides;
    $("doc-continue").disabled = !($("doc-country").value && sides.every((s) => accepted[s]));
  }

  function documentChanged() {
    for (const side of Object.keys(accepted)) delete accepted[side];
    renderSides();
  }
  $("doc-country").onchange = documentChanged;
  $("doc-type").onchange = documentChanged;

  async function uploadDocument(side, blob) {
    clearError();
    const country = $("doc-country").value;
    if (!country) return fail("err_invalid_country");
    if (tooLarge(blob)) return fail("err_file_too_large", { mb: Math.floor(overview.max_upload_bytes / 1e6) });
    const node = $("side-" + side);
    const bar = node.querySelector(".side-progress");
    const thumb = node.querySelector(".side-thumb");
    for (const b of node.querySelectorAll("button, input")) b.disabled = true;
    bar.hidden = false; bar.value = 0;
    const status = sideStatus(side);
    delete accepted[side];
    docReady();
    const path = `/api/onboarding/document/${side}?country=${encodeURIComponent(country)}&type=${encodeURIComponent($("doc-type").value)}`;
    try {
      const reply = await upload(path, blob, (pct, done) => {
        bar.value = pct;
        if (done) say(status, "checking"); else say(status, "uploading", { pct });
      });
      bar.hidden = true;
      showPhotoResult(side, reply, status, thumb, blob);
    } catch (e) { bar.hidden = true; status.hidden = true; fail(e); }
    for (const b of node.querySelectorAll("button, input")) b.disabled = false;
    docReady();
  }

  function showPhotoResult(side, reply, status, thumb, blob) {
    const body = reply.body || {};
    if (reply.status === 200 && body.accepted) {
      accepted[side] = true;
      status.className = "side-status status ok";
      say(status, "photo_ok");
      thumb.src = URL.createObjectURL(blob); thumb.hidden = false;
      return;
    }
    if (body.error && body.error.problems) {  // 422 photo_rejected
      status.className = "side-status status bad";
      showProblems(status, body.error);
      return;
    }
    status.hidden = true;
    handleStepError(body.error || { code: "unknown" });
  }

  // What to fix in a refused photo (the error photo_rejected), and the attempts left.
  function showProblems(status, error) {
    status.textContent = "";
    delete status.dataset.i18n;
    const list = document.createElement("ul");
    for (const problem of error.problems) list.append(say(document.createElement("li"), "p_" + problem));
    status.append(list, say(document.createElement("small"), "attempts_left", { n: error.attempts_left }));
  }

  $("doc-continue").onclick = async () => {
    $("doc-continue").disabled = true;
    try { await api("POST", "/api/onboarding/document-done"); route(); }
    catch (e) { handleStepError(e); docReady(); }
  };

  let docCameraSide = null, docStream = null;

  async function openDocumentCamera(side) {
    clearError();
    try {
      docStream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: { ideal: "environment" }, width: { ideal: 1920 }, height: { ideal: 1080 } },
        audio: false,
      });
    } catch (e) { return cameraProblem(e); }
    docCameraSide = side;
    $("doc-video").srcObject = docStream;
    $("camera-overlay").hidden = false;
  }

  function closeDocumentCamera() {
    $("camera-overlay").hidden = true;
    if (docStream) for (const track of docStream.getTracks()) track.stop();
    docStream = null;
  }

  $("doc-cancel").onclick = closeDocumentCamera;
  $("doc-shoot").onclick = async () => {
    const blob = await grab($("doc-video"), false);
    const side = docCameraSide;
    closeDocumentCamera();
    if (blob) uploadDocument(side, blob);
  };

  // A frame of ``video`` as a JPEG blob (unmirrored: what the camera saw).
  function grab(video) {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth; canvas.height = video.videoHeight;
    if (!canvas.width) return Promise.resolve(null);
    canvas.getContext("2d").drawImage(video, 0, 0);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  }

  // -- check your data ----------------------------------------------------------------------

  const FIELDS = ["surname", "given_names", "document_number", "nationality", "date_of_birth",
    "date_of_expiry", "sex", "tax_code", "phone", "email"];
  const FROM_DOCUMENT = ["surname", "given_names", "document_number", "nationality", "date_of_birth",
    "date_of_expiry", "sex"];

  function showData() {
    show("screen-data");
    hideCodes();
    const prefill = overview.prefill || {};
    $("f-nationality").dataset.want = prefill.nationality || "";
    fillCountries();
    for (const name of FIELDS) {
      const input = $("f-" + name);
      input.value = prefill[name] || "";
      fieldError(name, null);
      const field = input.closest(".field");
      const hint = field.querySelector(".from-doc");
      if (hint) hint.remove();
      if (FROM_DOCUMENT.includes(name) && prefill[name]) {
        const small = say(document.createElement("small"), "from_document");
        small.className = "from-doc muted";
        input.after(small);
        input.dataset.read = prefill[name];
        input.oninput = () => { say(small, input.value === input.dataset.read ? "from_document" : "edited"); };
      }
    }
    taxCodeField();
  }

  for (const name of FIELDS) $("f-" + name).addEventListener("input", () => fieldError(name, null));

  function taxCodeField() {
    const italian = $("f-nationality").value === "ITA" || overview.prefill.issuing_state === "ITA"
      || overview.document.country === "ITA";
    $("tax-code-field").hidden = !italian && !$("f-tax_code").value;
  }
  $("f-nationality").onchange = taxCodeField;

  function fieldError(name, err) {
    const field = document.querySelector(`.field[data-field="${name}"]`);
    if (!field) return false;
    const small = field.querySelector(".field-error");
    field.classList.toggle("invalid", !!err);
    $("f-" + name).setAttribute("aria-invalid", err ? "true" : "false");
    if (err) say(small, "err_" + err.code); else { small.textContent = ""; delete small.dataset.i18n; }
    return true;
  }

  // A changed e-mail or mobile number is judged only once the code sent to it comes back
  // (nobody learns from this page whether a contact belongs to someone else).
  const CODE_KINDS = ["email", "phone"];

  function codeField(kind) { return document.querySelector(`.field[data-field="${kind}_code"]`); }

  function showCodes(answer) {
    $("contact-codes").hidden = false;
    for (const kind of CODE_KINDS) {
      const field = codeField(kind), wanted = answer.verify.includes(kind);
      field.hidden = !wanted;
      if (!wanted) { $("f-" + kind + "_code").value = ""; continue; }
      const to = (answer.sent_to || {})[kind];
      if (to) { $("f-" + kind + "_code").value = ""; say(field.querySelector(".code-sent"), "codes_sent_to", { to }); }
    }
    const first = CODE_KINDS.find((kind) => !codeField(kind).hidden);
    if (first) $("f-" + first + "_code").focus();
  }

  function hideCodes() {
    $("contact-codes").hidden = true;
    for (const kind of CODE_KINDS) { codeField(kind).hidden = true; $("f-" + kind + "_code").value = ""; }
  }

  for (const kind of CODE_KINDS) {
    // a code proves the contact it was sent to, not the one typed after it
    $("f-" + kind).addEventListener("input", () => { if (!codeField(kind).hidden) hideCodes(); });
    $("f-" + kind + "_code").addEventListener("input", () => fieldError(kind + "_code", null));
  }

  async function sendData(withCodes) {
    clearError();
    const body = {};
    for (const name of FIELDS) {
      fieldError(name, null);
      const value = $("f-" + name).value.trim();
      if (name === "tax_code" && $("tax-code-field").hidden) continue;
      body[name] = value;
    }
    if (withCodes && !$("contact-codes").hidden) {
      body.codes = {};
      for (const kind of CODE_KINDS) {
        fieldError(kind + "_code", null);
        if (!codeField(kind).hidden) body.codes[kind] = $("f-" + kind + "_code").value.trim();
      }
    }
    $("data-submit").disabled = $("codes-resend").disabled = true;
    try {
      const answer = await api("POST", "/api/onboarding/data", body);
      if (answer.ok === false) showCodes(answer);
      else { hideCodes(); route(); }
    }
    catch (err) {
      const name = err.field || { invalid_email: "email", invalid_phone: "phone", email_in_use: "email",
        phone_in_use: "phone", invalid_tax_code: "tax_code" }[err.code];
      if (name && name.endsWith("_code") && fieldError(name, err)) {
        $("f-" + name).focus();
      } else if (name && fieldError(name, err)) {
        if (name === "tax_code") $("tax-code-field").hidden = false;
        $("f-" + name).focus();
        if (err.code.endsWith("_in_use")) { hideCodes(); fail(err); }
      } else handleStepError(err);
    }
    $("data-submit").disabled = $("codes-resend").disabled = false;
  }

  $("codes-resend").onclick = () => sendData(false);

  $("data-form").onsubmit = async (e) => {
    e.preventDefault();
    await sendData(true);
  };

  // -- selfie ----------------------------------------------------------------------------------

  let selfieBlob = null;

  async function showSelfie() {
    show("screen-selfie");
    selfieMode("live");
    if (await startCamera(false)) { $("selfie-video").srcObject = stream; $("selfie-take").disabled = false; }
  }

  function selfieMode(mode) {
    $("selfie-video").hidden = mode !== "live";
    $("selfie-shot").hidden = mode === "live";
    $("selfie-take").hidden = mode !== "live";
    $("selfie-retake").hidden = mode === "live";
    $("selfie-use").hidden = mode !== "shot";
    $("selfie-retake").disabled = $("selfie-use").disabled = mode === "sending";
    document.querySelector("#screen-selfie .guide").hidden = mode !== "live";
  }

  $("selfie-take").onclick = async () => {
    selfieBlob = await grab($("selfie-video"));
    if (!selfieBlob) return;
    $("selfie-shot").src = URL.createObjectURL(selfieBlob);
    $("selfie-status").hidden = true;
    selfieMode("shot");
  };
  $("selfie-retake").onclick = () => { $("selfie-status").hidden = true; selfieMode("live"); };
  $("selfie-use").onclick = async () => {
    clearError();
    selfieMode("sending");
    const bar = $("selfie-progress"), status = $("selfie-status");
    bar.hidden = false; status.hidden = false; status.className = "status";
    try {
      const reply = await upload("/api/onboarding/selfie", selfieBlob, (pct, done) => {
        bar.value = pct;
        say(status, done ? "checking" : "uploading", done ? undefined : { pct });
      });
      bar.hidden = true;
      const body = reply.body || {};
      if (reply.status === 200 && body.accepted) { say(status, "selfie_ok"); status.className = "status ok"; return route(); }
      selfieMode("shot");
      if (body.error && body.error.problems) {  // 422 photo_rejected
        status.className = "status bad";
        showProblems(status, body.error);
      } else { status.hidden = true; handleStepError(body.error || { code: "unknown" }); }
    } catch (e) { bar.hidden = true; status.hidden = true; selfieMode("shot"); fail(e); }
  };

  // -- audio/video test ----------------------------------------------------------------------

  const av = { camera: false, microphone: false, speaker: false, network: false };
  let meterTimer = null, audioContext = null;

  function avReady() {
    $("av-continue").disabled = !(av.camera && av.microphone && av.speaker && av.network);
  }

  async function showAvTest() {
    show("screen-avtest");
    avReady();
    if (!(await startCamera(true))) return;
    $("av-video").srcObject = stream;
    av.camera = stream.getVideoTracks().some((tr) => tr.readyState === "live");
    startMeter();
    if (!av.network) runConnectivity();
    avReady();
  }

  function startMeter() {
    if (meterTimer || !stream.getAudioTracks().length) return;
    audioContext = audioContext || new AudioContext();
    const analyser = audioContext.createAnalyser();
    analyser.fftSize = 1024;
    audioContext.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    let heard = 0;
    const started = Date.now();
    meterTimer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const level = Math.min(1, Math.sqrt(sum / samples.length) * 4);
      $("mic-level").value = level;
      if (level > 0.02) heard += 1;
      if (heard >= 5 && !av.microphone) { av.microphone = true; say($("mic-status"), "av_mic_ok"); avReady(); }
      if (!av.microphone && Date.now() - started > 10000) advise("adv_mic_silent");
      if (av.microphone && $("advice").dataset.i18n === "adv_mic_silent") advise(null);
    }, 100);
  }

  function stopMeter() { if (meterTimer) clearInterval(meterTimer); meterTimer = null; }

  $("speaker-play").onclick = async () => {
    audioContext = audioContext || new AudioContext();
    await audioContext.resume();
    const osc = audioContext.createOscillator(), gain = audioContext.createGain();
    osc.frequency.value = 660; gain.gain.value = 0.2;
    osc.connect(gain).connect(audioContext.destination);
    osc.start(); osc.stop(audioContext.currentTime + 1.2);
    $("speaker-ask").hidden = false;
  };
  $("speaker-yes").onclick = () => { av.speaker = true; $("speaker-ask").hidden = true; advise(null); avReady(); };
  $("speaker-no").onclick = () => { av.speaker = false; advise("adv_no_sound"); avReady(); };

  $("net-run").onclick = () => runConnectivity();

  // The connectivity test: a data channel to the server, which measures (see media/probe.py).
  async function runConnectivity() {
    const status = $("net-status");
    status.hidden = false; status.className = "muted";
    say(status, "av_net_running");
    $("net-run").disabled = true;
    av.network = false; avReady();
    let result = null;
    let probe;
    try {
      // the call's STUN/TURN servers and policy (relay only when the server forces it)
      const ice = await api("GET", "/api/onboarding");
      probe = new RTCPeerConnection(videoid.iceConfig(ice.ice_servers, ice.ice_transport_policy));
    } catch (e) { $("net-run").disabled = false; status.hidden = true; return handleStepError(e); }
    try {
      result = await new Promise(async (resolve, reject) => {
        const timer = setTimeout(() => resolve(null), 25000);
        const channel = probe.createDataChannel("probe");
        channel.binaryType = "arraybuffer";
        channel.onmessage = (e) => {
          const msg = JSON.parse(e.data);
          if (msg.type === "ping") channel.send(JSON.stringify({ type: "pong", seq: msg.seq, t: msg.t }));
          else if (msg.type === "upload") sendBurst(channel);
          else if (msg.type === "result") { clearTimeout(timer); resolve(msg); }
        };
        try {
          await probe.setLocalDescription(await probe.createOffer());
          await videoid.gathered(probe);
          const reply = await api("POST", "/api/onboarding/connectivity",
            { type: "offer", sdp: probe.localDescription.sdp });
          await probe.setRemoteDescription(reply.answer);
        } catch (e) { clearTimeout(timer); reject(e); }
      });
    } catch (e) { probe.close(); $("net-run").disabled = false; status.hidden = true; return handleStepError(e); }
    probe.close();
    $("net-run").disabled = false;
    if (!result) result = { passed: false, problems: ["no_connection"] };
    av.network = !!result.passed;
    if (result.rtt_ms != null) say(status, "av_net_result", { rtt: Math.round(result.rtt_ms), kbps: Math.round(result.bitrate_kbps || 0) });
    status.className = result.passed ? "status ok" : "status bad";
    advise(result.passed ? null : "adv_" + result.problems[0]);
    avReady();
  }

  function sendBurst(channel) {
    const chunk = new Uint8Array(16384);
    const until = performance.now() + 2000;
    channel.bufferedAmountLowThreshold = 256 * 1024;
    const pump = () => {
      while (performance.now() < until && channel.readyState === "open" && channel.bufferedAmount < 1024 * 1024) {
        channel.send(chunk);
      }
      if (channel.readyState !== "open") return;
      if (performance.now() < until) setTimeout(pump, 5);
      else channel.send(JSON.stringify({ type: "done" }));
    };
    pump();
  }

  $("av-continue").onclick = async () => {
    $("av-continue").disabled = true;
    try {
      await api("POST", "/api/onboarding/av-test", { camera: av.camera, microphone: av.microphone, speaker: av.speaker });
      stopMeter();
      route();
    } catch (e) { handleStepError(e); avReady(); }
  };

  // -- cameras ------------------------------------------------------------------------------

  function supported() {
    if (!window.isSecureContext) return "adv_insecure";
    if (!window.RTCPeerConnection || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return "adv_unsupported";
    return null;
  }

  function cameraProblem(e) {
    const name = e && e.name;
    advise(name === "NotAllowedError" || name === "SecurityError" ? "adv_denied"
      : name === "NotFoundError" || name === "OverconstrainedError" ? "adv_no_camera"
      : name === "NotReadableError" || name === "AbortError" ? "adv_in_use" : (supported() || "adv_unsupported"));
    if (!matchMedia("(pointer: coarse)").matches && PRE.includes(state)) $("phone-offer").hidden = false;
    return false;
  }

  async function startCamera(withAudio) {
    const problem = supported();
    if (problem) { advise(problem); return false; }
    if (stream && (!withAudio || stream.getAudioTracks().length)) return true;
    stopStream();
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: "user", width: { ideal: 1280 }, height: { ideal: 720 } }, audio: withAudio,
      });
      advise(null);
      return true;
    } catch (e) { return cameraProblem(e); }
  }

  function stopStream() {
    stopMeter();
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
  }

  // -- queue and call -------------------------------------------------------------------------

  async function showReady() {
    show("screen-ready");
    if (await startCamera(true)) {
      $("preview").srcObject = stream;
      say($("camera-status"), "camera_ready");
      $("join").disabled = false;
    }
  }

  $("join").onclick = async () => {
    $("join").disabled = true;
    try { showQueue(await videoid.request(socket, "join_queue")); }
    catch (e) { fail(e); $("join").disabled = false; }
  };
  $("leave").onclick = async () => {
    try { const s = await videoid.request(socket, "leave_queue"); state = s.state; route(); }
    catch (e) { fail(e); }
  };

  function showQueue(q) {
    if (q.state) state = q.state;
    show("screen-waiting");
    renderStepper();
    if (q.position) $("position").textContent = q.position;
    if (q.estimated_wait_seconds !== undefined) {
      const s = q.estimated_wait_seconds;
      if (s < 60) say($("eta"), "eta_lt1"); else say($("eta"), "eta_min", { n: Math.round(s / 60) });
    }
  }

  let callInfo = null, mediaRetries = 0;

  async function startCall(c) {
    const resumed = state === "in_call" && callInfo !== null;
    state = "in_call"; callInfo = c;
    show("screen-call");
    renderStepper();
    say($("call-title"), "call_title", { name: (c.operator && c.operator.display_name) || t("an_operator") });
    if (!resumed) { $("chat-log").textContent = ""; $("otp-notice").hidden = true; $("challenge").hidden = true; }
    say($("media-state"), resumed ? "call_reconnecting" : "connecting_video");
    await startCamera(true);
    $("local").srcObject = stream;
    await connectCallMedia();
    const track = stream && stream.getVideoTracks()[0];
    // the camera's name as the browser gives it: the operator sees it (virtual cameras)
    if (track) videoid.request(socket, "camera", { label: track.label || "" }).catch(() => {});
  }

  async function connectCallMedia() {
    endMedia();
    try {
      pc = await videoid.connectMedia(socket, stream || new MediaStream(), $("remote"), callInfo.ice_servers, (st) => {
        if (st === "connected") { $("media-state").textContent = ""; mediaRetries = 0; }
        else say($("media-state"), st === "failed" ? "call_reconnecting" : "video_" + st);
        // the media path broke while the signalling holds: a new peer connection (R12)
        if (st === "failed" && state === "in_call" && mediaRetries < 5) {
          mediaRetries += 1;
          setTimeout(() => { if (state === "in_call") connectCallMedia(); }, 1000 * mediaRetries);
        }
      }, callInfo.ice_transport_policy);
    } catch (e) { fail(e); }
  }

  function endMedia() { if (pc) { pc.onconnectionstatechange = null; pc.close(); pc = null; } }

  // -- in the call: challenges, chat, the SMS code -------------------------------------------

  let challengeTimer = null;
  function showChallenge(c) {
    clearInterval(challengeTimer);
    const box = $("challenge");
    if (c.kind) {
      box.hidden = false; box.className = "challenge-banner"; box.dataset.kind = c.kind;
      say($("challenge-text"), "challenge_" + c.kind);
      let left = c.seconds || 0;
      const tick = () => { say($("challenge-time"), "challenge_seconds", { n: Math.max(0, left) }); left -= 1; };
      tick(); challengeTimer = setInterval(tick, 1000);
    } else if (c.last) {
      box.hidden = false; box.className = "challenge-banner " + c.last.result; box.dataset.kind = "";
      say($("challenge-text"), "challenge_" + c.last.result); $("challenge-time").textContent = "";
      challengeTimer = setTimeout(() => { box.hidden = true; }, 2500);
    }
  }

  function addChat(m) {
    const p = document.createElement("p");
    p.className = "chat-" + m.from;
    p.textContent = `${t(m.from === "customer" ? "chat_you" : "chat_operator")}: ${m.text}`;
    $("chat-log").append(p); $("chat-log").scrollTop = $("chat-log").scrollHeight;
  }

  $("chat-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const text = $("chat-text").value.trim(); if (!text) return;
    try { const r = await videoid.request(socket, "chat", { text }); $("chat-text").value = ""; addChat(r); }
    catch (e) { fail(e); }
  };

  function showOutcome(outcome) {
    endMedia();
    state = outcome;
    show("screen-outcome");
    $("stepper").hidden = true;
    const key = ["approved", "rejected", "suspended"].includes(outcome) ? outcome : "other";
    say($("outcome-title"), `outcome_${key}_t`);
    $("outcome-title").className = "outcome-" + outcome;
    if (key === "other") $("outcome-text").textContent = ""; else say($("outcome-text"), "outcome_" + key);
    document.body.dataset.outcome = outcome;
    stopStream();
    if (["approved", "certificate_requested", "contract_signed", "completed"].includes(outcome)) {
      if (outcome !== "approved") say($("outcome-title"), "outcome_approved_t");
      videoid.startSigning({ api, fail, clearError });
    }
  }

  // -- continue on the phone --------------------------------------------------------------------

  $("handover-start").onclick = async () => {
    clearError();
    let link;
    try { link = await api("POST", "/api/onboarding/handover"); }
    catch (e) { return handleStepError(e); }
    handedOver = true;
    stopStream();
    show("screen-handover");
    const time = new Date(link.expires_at * 1000).toLocaleTimeString(videoid.lang, { hour: "2-digit", minute: "2-digit" });
    say($("handover-text"), "phone_scan", { time });
    $("handover-qr").src = link.qr;
    $("handover-url").href = link.url;
    $("handover-url").textContent = link.url.split("#")[0];
    socket.disconnect();  // the phone takes the session over
    $("conn").hidden = true;
  };

  $("handover-here").onclick = () => {
    handedOver = false;
    $("conn").hidden = false;
    socket.connect();
  };

  // -- start ------------------------------------------------------------------------------------

  async function claimHandover(code) {
    const data = await api("POST", "/api/onboarding/handover/claim", { token: code });
    history.replaceState(null, "", "#" + data.token);
    return data.token;
  }

  function connect() {
    socket = io("/customer", { auth: { token }, transports: ["websocket"] });
    socket.on("connect", () => { say($("conn"), "conn_connected"); clearError(); });
    socket.on("disconnect", () => { if (!handedOver) say($("conn"), "conn_reconnecting"); });
    socket.on("connect_error", (err) => {
      say($("conn"), "conn_offline");
      const code = err && err.data && err.data.code;
      fail(code ? err.data : { code: "network" });
      if (code === "session_in_use") setTimeout(() => socket.connect(), 3000);
    });
    socket.on("error", (e) => fail(e));
    socket.on("session", (s) => {
      if (s.state === "in_call") { state = s.state; return startCall(s); }  // back in the call (R12)
      state = s.state; $("interrupted").hidden = !s.interrupted;  // the server stopped meanwhile
      if (s.position) showQueue(s); else route();
    });
    socket.on("state", (s) => { state = s.state; if (PRE.includes(state)) route(); });
    socket.on("queue", (q) => showQueue(q));
    socket.on("assigned", () => { $("position").textContent = "1"; say($("eta"), "eta_soon"); });
    socket.on("call_started", (c) => startCall(c));
    socket.on("call_ended", (c) => { callInfo = null; endMedia(); state = "waiting"; showQueue({}); $("requeued").hidden = c.reason !== "operator_left"; });
    socket.on("outcome", (o) => { callInfo = null; showOutcome(o.outcome); });
    socket.on("challenge", showChallenge);
    socket.on("chat", addChat);
    socket.on("otp_sent", () => { $("otp-notice").hidden = false; });
  }

  (async function start() {
    let hash = location.hash.slice(1);
    if (hash.startsWith("handover=")) {
      try { hash = await claimHandover(hash.slice("handover=".length)); }
      catch (e) { say($("conn"), "conn_offline"); return fail(e); }
    }
    token = hash;
    if (!token) { say($("conn"), "conn_offline"); return fail("err_invitation_invalid"); }
    const problem = supported();
    if (problem) advise(problem);
    connect();
  })();
})();
