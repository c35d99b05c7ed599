// The signed contract by the activation e-mail's link (/contract#<token>): the token
// stays in the fragment, never in a URL the server or a proxy logs; it is sent once,
// in a header, and the link is spent. In the customer's language (i18n.js), as the
// customer page.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const token = location.hash.slice(1);
  history.replaceState(null, "", location.pathname);
  const button = $("download");
  const status = $("status");
  for (const [code, name] of Object.entries(videoid.LANGUAGES)) {
    const option = document.createElement("option");
    option.value = code; option.textContent = name;
    $("lang").append(option);
  }
  $("lang").value = videoid.lang;
  $("lang").onchange = () => {
    videoid.setLanguage($("lang").value);
    document.title = videoid.t("contract_page_title");
  };
  videoid.applyTexts();
  document.title = videoid.t("contract_page_title");
  button.addEventListener("click", async () => {
    button.disabled = true;
    let response;
    try {
      response = await fetch("/api/signing/download", {
        headers: { Authorization: "Bearer " + token },
      });
    } catch (e) {
      videoid.say(status, "err_network");
      button.disabled = false;
      return;
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      status.dataset.code = (body.error && body.error.code) || "unknown";
      videoid.say(status, videoid.errorKey(body.error));
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = "contract-signed.pdf";
    link.click();
    videoid.say(status, "contract_page_saved");
  });
})();
