// The staff's login in two steps (the password, then a code of their authenticator app;
// at the first login the app is enrolled from a QR code and ten recovery codes are shown
// once) and the re-authentication a decision may ask for. Shared by the operator,
// supervisor and compliance consoles; see docs/protocol.md.
"use strict";
window.videoid = window.videoid || {};
(function () {
  const $ = (id) => document.getElementById(id);

  // api(path, body) rejects with the server's {code, message}; done(login) gets the
  // second step's answer ({token, operator, ...})
  videoid.staffLogin = function (api, fail, clearError, done) {
    let challenge = null;
    const back = () => { $("screen-second-factor").hidden = true; $("screen-login").hidden = false; };
    $("login-form").onsubmit = async (ev) => {
      ev.preventDefault(); clearError();
      try {
        const r = await api("/api/operator/login", { username: $("username").value, password: $("password").value });
        $("password").value = "";
        challenge = r.challenge;
        const enrol = r.second_factor === "enrol";
        $("enrol").hidden = !enrol;
        if (enrol) { $("enrol-qr").src = r.qr; $("enrol-secret").textContent = r.secret; }
        $("code-label").textContent = enrol ? "The code your app shows now"
          : "Code from your authenticator app (or a recovery code)";
        $("screen-login").hidden = true; $("screen-second-factor").hidden = false;
        $("code").value = ""; $("code").focus();
      } catch (e) { fail(e.message || "Login failed."); }
    };
    $("code-cancel").onclick = () => { challenge = null; clearError(); back(); };
    $("code-form").onsubmit = async (ev) => {
      ev.preventDefault(); clearError();
      try {
        const r = await api("/api/operator/login/second-factor", { challenge, code: $("code").value.trim() });
        $("code").value = ""; $("screen-second-factor").hidden = true;
        $("enrol-qr").removeAttribute("src"); $("enrol-secret").textContent = "";
        if (!r.recovery_codes) { done(r); return; }
        const list = $("recovery-codes"); list.textContent = "";
        for (const c of r.recovery_codes) { const li = document.createElement("li"); li.textContent = c; list.append(li); }
        $("screen-recovery").hidden = false;
        $("recovery-done").onclick = () => { list.textContent = ""; $("screen-recovery").hidden = true; done(r); };
      } catch (e) {
        $("code").value = "";
        if (e.code === "challenge_expired") back();
        fail(e.message || "Wrong code.");
      }
    };
  };

  // send() is a decision (or an account change): when the server answers
  // reauthentication_required, ask for a code, confirm it, and send again. The form
  // the decision came from is left as it is, so nothing typed is lost.
  videoid.withReauth = async function (api, send) {
    try { return await send(); }
    catch (e) { if (!e || e.code !== "reauthentication_required") throw e; }
    await askCode(api);
    return await send();
  };

  // working in the page is using the login (operators.idle_minutes): a click, a key or
  // a move of the pointer is told to the server at most once a minute
  videoid.keepAlive = function (api) {
    let last = Date.now();
    const used = () => {
      if (Date.now() - last < 60000) return;
      last = Date.now();
      api("/api/operator/me").catch(() => {});
    };
    for (const name of ["pointerdown", "pointermove", "keydown"]) document.addEventListener(name, used, { passive: true });
  };

  function askCode(api) {
    return new Promise((resolve, reject) => {
      const dialog = $("reauth-dialog");
      $("reauth-code").value = ""; $("reauth-error").hidden = true;
      $("reauth-form").onsubmit = async (ev) => {
        ev.preventDefault();
        try {
          await api("/api/operator/reauth", { code: $("reauth-code").value.trim() });
          dialog.close(); resolve();
        } catch (e) {
          $("reauth-code").value = "";
          $("reauth-error").textContent = e.message || "Wrong code."; $("reauth-error").hidden = false;
        }
      };
      $("reauth-cancel").onclick = () => {
        dialog.close(); reject({ code: "not_confirmed", message: "Not confirmed: nothing was decided." });
      };
      dialog.showModal(); $("reauth-code").focus();
    });
  }
})();
