// The operator's view of what the customer's onboarding produced: images (zoomable),
// the zone's fields with each check digit, edited fields, selfie and face match, flags.
"use strict";
window.videoid = window.videoid || {};
(function () {
  const $ = (id) => document.getElementById(id);
  const FIELDS = [["surname", "Surname"], ["given_names", "Given names"], ["document_number", "Document number"],
    ["date_of_birth", "Date of birth"], ["date_of_expiry", "Expiry"], ["nationality", "Nationality"],
    ["sex", "Sex"], ["issuing_state", "Issuing state"], ["email", "E-mail"], ["phone", "Mobile"],
    ["tax_code", "Tax code"]];
  const FLAGS = {
    document_expired: "Document expired", mrz_check_failed: "Check digit failed", no_mrz: "No machine readable zone",
    country_mismatch: "Country differs from the zone", document_type_mismatch: "Type differs from the zone",
    fields_edited: "Customer edited fields", face_mismatch: "Face does not match", face_match_unavailable: "No face match",
  };
  const BAD = ["face_mismatch", "mrz_check_failed", "document_expired"];

  // the login's CSRF token: the server refuses a POST authenticated by the login cookie
  // without it in this header (a page of another site cannot read the cookie)
  function csrfToken() {
    const found = document.cookie.split("; ").find((c) => /^(__Host-)?videoid_csrf=/.test(c));
    return found ? found.slice(found.indexOf("=") + 1) : "";
  }
  // the operator pages' HTTP requests (the login cookie); rejects with the server's error
  // background: a refresh the page made on its own (X-Background-Request), which does
  // not count as using the login
  videoid.api = async function (path, body, background) {
    const headers = body ? { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() } : {};
    if (background) headers["X-Background-Request"] = "1";
    const r = await fetch(path, { method: body ? "POST" : "GET", credentials: "same-origin",
      headers, body: body && JSON.stringify(body) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      // a login unused too long has ended: back to the login
      if (data.error && data.error.code === "login_expired") location.reload();
      throw (data.error || { code: "http_" + r.status, message: r.statusText });
    }
    return data;
  };

  function cell(row, text, cls) { const c = row.insertCell(); c.textContent = text == null ? "–" : text; if (cls) c.className = cls; return c; }

  videoid.showOnboarding = async function (sessionId) {
    const r = await fetch(`/api/sessions/${sessionId}/onboarding`, { credentials: "same-origin" });
    const view = await r.json();
    if (!r.ok) throw (view.error || { message: r.statusText });
    $("onboarding").hidden = false;

    const flags = $("ob-flags"); flags.textContent = "";
    for (const flag of view.flags) {
      const span = document.createElement("span");
      span.className = "flag" + (BAD.includes(flag) ? " bad" : ""); span.dataset.flag = flag;
      span.textContent = FLAGS[flag] || flag; flags.append(span);
    }

    const images = $("ob-images"); images.textContent = "";
    const names = [...view.document.images, ...(view.selfie ? ["selfie"] : [])];
    for (const name of names) {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.src = `/api/sessions/${sessionId}/images/${name}`; img.alt = name; img.dataset.name = name;
      img.onclick = () => openViewer(img.src);
      const caption = document.createElement("figcaption"); caption.textContent = name;
      fig.append(img, caption); images.append(fig);
    }

    const match = view.selfie && view.selfie.match;
    const m = $("ob-match");
    if (!view.selfie) { m.textContent = "No selfie."; m.className = "status"; }
    else if (!match) { m.textContent = "Face match unavailable (no portrait found on the document)."; m.className = "status bad"; }
    else {
      m.textContent = `Face match: ${match.match ? "same person" : "NOT the same person"} — distance ` +
        `${match.distance.toFixed(3)}, threshold ${match.threshold.toFixed(2)}`;
      m.className = "status " + (match.match ? "ok" : "bad");
      m.dataset.match = match.match ? "yes" : "no";
    }

    const doc = view.document, mrz = doc.mrz || {};
    $("ob-doc").textContent = [doc.type, doc.country, mrz.format].filter(Boolean).join(" · ");
    const data = view.personal_data || {};
    const body = $("ob-data").tBodies[0]; body.textContent = "";
    for (const [key, label] of FIELDS) {
      if (mrz[key] === undefined && data[key] === undefined) continue;
      const row = body.insertRow(); row.dataset.field = key;
      if (view.edited.includes(key)) row.className = "edited";
      cell(row, label); cell(row, mrz[key]);
      cell(row, data[key] === undefined ? null : data[key] + (view.edited.includes(key) ? "  (edited)" : ""));
    }
    const checks = $("ob-checks").tBodies[0]; checks.textContent = "";
    for (const c of mrz.checks || []) {
      const row = checks.insertRow();
      cell(row, c.name); cell(row, c.printed); cell(row, c.expected);
      cell(row, c.ok ? "✓ ok" : "✗ mismatch", c.ok ? "check-ok" : "check-bad");
    }
    if (doc.mrz) {
      const row = checks.insertRow();
      cell(row, "validity"); cell(row, ""); cell(row, "");
      cell(row, mrz.valid ? "✓ valid" : mrz.expired ? "✗ expired" : "✗ not valid", mrz.valid ? "check-ok" : "check-bad");
    }
    const tests = $("ob-tests").tBodies[0]; tests.textContent = "";
    const sc = (view.selfie && view.selfie.checks) || {};
    if (view.selfie) {
      const row = tests.insertRow();
      cell(row, "Selfie");
      cell(row, `faces ${sc.faces}, yaw ${fmt(sc.yaw_ratio)}, roll ${fmt(sc.roll_degrees)}°, eyes ${fmt(sc.eye_aspect_ratio)}, light ${fmt(sc.face_brightness)}`);
    }
    const av = view.av_test;
    if (av) {
      const row = tests.insertRow();
      cell(row, "A/V test");
      const net = av.connectivity;
      cell(row, `camera ${av.camera ? "ok" : "failed"}, microphone ${av.microphone ? "ok" : "failed"}, speaker ${av.speaker ? "ok" : "failed"}` +
        (net ? `; connection ${net.passed ? "ok" : "poor"}: round trip ${net.rtt_ms} ms, upload ${net.bitrate_kbps} kbit/s` : ""));
    }
    $("ob-consent").textContent = view.consents.length
      ? "Consent: " + view.consents.map((c) => `${c.document} v${c.version} (${c.language})`).join(", ") +
        " at " + new Date(view.consents[0].at * 1000).toLocaleString()
      : "No consent recorded.";
  };

  function fmt(v) { return typeof v === "number" ? v.toFixed(2) : "–"; }

  let scale = 1;
  // zoomable image viewer: one image, or two side by side (document portrait and live face)
  function zoom(s) {
    scale = Math.min(8, Math.max(0.1, s));
    for (const id of ["viewer-img", "viewer-img2"]) $(id).style.transform = `scale(${scale})`;
    $("zoom-level").textContent = Math.round(scale * 100) + "%";
  }
  function fit() {
    const imgs = ["viewer-img", "viewer-img2"].map($).filter((i) => !i.hidden);
    const stage = $("viewer-img").parentElement;
    if (!imgs.every((i) => i.naturalWidth)) return zoom(1);
    const width = stage.clientWidth / imgs.length;
    zoom(Math.min(...imgs.map((i) => Math.min(width / i.naturalWidth, stage.clientHeight / i.naturalHeight)), 1));
  }
  function openViewer(src, src2) {
    $("viewer").hidden = false;
    const img = $("viewer-img"), img2 = $("viewer-img2");
    img.onload = fit; img2.onload = fit; img.src = src;
    img2.hidden = !src2; if (src2) img2.src = src2;
    $("viewer").classList.toggle("pair", !!src2);
  }
  videoid.openViewer = openViewer;
  $("zoom-in").onclick = () => zoom(scale * 1.25);
  $("zoom-out").onclick = () => zoom(scale / 1.25);
  $("zoom-fit").onclick = fit;
  $("viewer-close").onclick = () => { $("viewer").hidden = true; };
  $("viewer").addEventListener("wheel", (e) => { if (e.ctrlKey || e.metaKey) return; e.preventDefault(); zoom(scale * (e.deltaY < 0 ? 1.1 : 1 / 1.1)); }, { passive: false });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("viewer").hidden = true; });
})();
