// The supervisor's account management: every staff account with its state, second
// factor and logins; disable or enable it, reset its password or its second factor,
// end its logins. The server audits each change and asks for a fresh code first
// (reauthentication_required) when the last one is too old.
"use strict";
window.videoid = window.videoid || {};
(function () {
  const $ = (id) => document.getElementById(id);
  const ACTIONS = [
    ["disable", "Disable", (a) => !a.disabled && !a.own],
    ["enable", "Enable", (a) => a.disabled],
    ["reset-password", "Reset password", () => true],
    ["reset-2fa", "Reset second factor", (a) => a.enrolled],
    ["revoke-logins", "End logins", (a) => a.logins > 0],
  ];

  function show(message, ok) {
    const p = $("accounts-result"); p.hidden = false;
    p.className = ok ? "status ok" : "status bad"; p.textContent = message;
  }

  async function load() {
    const { accounts } = await videoid.api("/api/staff/accounts");
    const body = $("accounts"); body.textContent = "";
    for (const a of accounts) {
      const tr = body.insertRow(); tr.dataset.username = a.username;
      tr.insertCell().textContent = a.username;
      tr.insertCell().textContent = a.role;
      tr.insertCell().textContent = a.disabled ? "disabled" : "active";
      tr.insertCell().textContent = a.enrolled ? `yes (${a.recovery_codes_left} recovery codes)` : "not enrolled";
      tr.insertCell().textContent = String(a.logins);
      const cell = tr.insertCell();
      for (const [action, label, offered] of ACTIONS) {
        if (!offered(a)) continue;
        const b = document.createElement("button"); b.className = "small"; b.textContent = label;
        b.dataset.action = action;
        b.onclick = () => act(a, action, label).catch((e) => show(e.message || String(e), false));
        cell.append(b);
      }
    }
  }

  async function act(account, action, label) {
    if (!confirm(`${label}: ${account.username}?`)) return;
    const r = await videoid.withReauth(videoid.api, () =>
      videoid.api(`/api/staff/accounts/${account.id}/${action}`, {}));
    show(r.password ? `${account.username}: new password ${r.password} (shown only now)`
      : `${label}: ${account.username} done.`, true);
    await load();
  }

  const tab = $("tab-accounts");
  if (tab) tab.addEventListener("click", () => { $("accounts-result").hidden = true; load().catch((e) => show(e.message, false)); });
})();
