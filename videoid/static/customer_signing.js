// After the approval: the certificate, the contract (page by page), the signature PIN
// (its PUK shown once), the SMS code and the signature (docs/protocol.md, /api/signing).
"use strict";
window.videoid = window.videoid || {};
(function () {
  const $ = (id) => document.getElementById(id);
  const say = (el, key, vars) => videoid.say(el, key, vars);
  let ctx = null, pages = [], page = 0, started = false;
  const PARTS = ["sign-request", "sign-contract", "sign-pin", "sign-puk", "sign-sign", "sign-done"];

  function part(id, step) {
    for (const p of PARTS) $(p).hidden = p !== id;
    if (id === "sign-sign") $("sign-contract").hidden = false;  // the contract stays in view
    const order = ["request", "contract", "pin", "sign", "done"];
    for (const li of $("sign-steps").children) {
      const i = order.indexOf(li.dataset.step), at = order.indexOf(step);
      li.className = i < at ? "done" : i === at ? "current" : "";
    }
    document.body.dataset.signing = id;
  }

  async function blobLink(path, anchor) {
    const r = await fetch(path, { headers: { Authorization: "Bearer " + location.hash.slice(1) } });
    if (!r.ok) throw { code: "network" };
    anchor.href = URL.createObjectURL(await r.blob());
  }

  function showPage() {
    $("contract-page").textContent = (pages[page] || []).join("\n");
    $("contract-count").textContent = `${page + 1} / ${pages.length}`;
    $("contract-prev").disabled = page === 0;
    $("contract-next").disabled = page >= pages.length - 1;
    if (page >= pages.length - 1) $("contract-read").disabled = false;  // read to the end
  }

  async function refresh() {
    const o = await ctx.api("GET", "/api/signing");
    if (o.state === "approved") {
      $("sign-name").textContent = o.to_issue.name;
      say($("sign-kind"), o.to_issue.qscd ? "sign_kind_qscd" : "sign_kind_plain");
      $("sign-issuer").textContent = o.to_issue.issuer;
      say($("sign-validity"), "sign_days", { days: o.to_issue.valid_days });
      return part("sign-request", "request");
    }
    if (o.state === "completed" || o.state === "contract_signed") {
      await blobLink("/api/signing/signed.pdf", $("signed-download"));
      return part("sign-done", "done");
    }
    const c = await ctx.api("GET", "/api/signing/contract");
    pages = c.pages; showPage();
    await blobLink("/api/signing/contract.pdf", $("contract-download"));
    if (!o.pin_set) {
      part("sign-contract", "contract");
      $("contract-read").disabled = pages.length > 1;
      return;
    }
    part("sign-sign", "sign");
  }

  videoid.startSigning = function (context) {
    ctx = context;
    $("signing").hidden = false;
    if (!started) { started = true; wire(); }
    refresh().catch(ctx.fail);
  };

  function wire() {
    $("sign-request-button").onclick = async () => {
      ctx.clearError(); $("sign-request-button").disabled = true;
      try { await ctx.api("POST", "/api/signing/certificate"); await refresh(); }
      catch (e) { ctx.fail(e); }
      finally { $("sign-request-button").disabled = false; }
    };
    $("contract-prev").onclick = () => { page = Math.max(0, page - 1); showPage(); };
    $("contract-next").onclick = () => { page = Math.min(pages.length - 1, page + 1); showPage(); };
    $("contract-read").onchange = () => { if ($("contract-read").checked) part("sign-pin", "pin"); };
    $("sign-pin").onsubmit = async (ev) => {
      ev.preventDefault(); ctx.clearError();
      try {
        const r = await ctx.api("POST", "/api/signing/pin", { pin: $("pin").value, pin_again: $("pin-again").value });
        $("pin").value = ""; $("pin-again").value = "";
        $("puk-value").textContent = r.puk.replace(/(\d{4})(?=\d)/g, "$1 ");
        part("sign-puk", "pin");
      } catch (e) { ctx.fail(e); }
    };
    $("puk-kept").onclick = () => { $("puk-value").textContent = ""; part("sign-sign", "sign"); };
    $("code-send").onclick = async () => {
      ctx.clearError();
      try {
        const r = await ctx.api("POST", "/api/signing/code");
        const time = new Date(r.expires_at * 1000).toLocaleTimeString(videoid.lang, { hour: "2-digit", minute: "2-digit" });
        say($("code-sent"), "sign_code_sent", { to: r.sent_to, time, ref: r.document_ref });
      } catch (e) { ctx.fail(e); }
    };
    $("sign-sign").onsubmit = async (ev) => {
      ev.preventDefault(); ctx.clearError(); $("sign-button").disabled = true;
      try {
        await ctx.api("POST", "/api/signing/sign", { pin: $("sign-pin-input").value, code: $("sign-code").value });
        $("sign-pin-input").value = ""; $("sign-code").value = "";
        await refresh();
      } catch (e) { ctx.fail(e); }
      finally { $("sign-button").disabled = false; }
    };
  }
})();
