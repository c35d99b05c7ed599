// The signed contract by the activation e-mail's link (/contract#<token>): the token
// stays in the fragment, never in a URL the server or a proxy logs; it is sent once,
// in a header, and the link is spent.
"use strict";
(function () {
  const token = location.hash.slice(1);
  history.replaceState(null, "", location.pathname);
  const button = document.getElementById("download");
  const status = document.getElementById("status");
  button.addEventListener("click", async () => {
    button.disabled = true;
    const response = await fetch("/api/signing/download", {
      headers: { Authorization: "Bearer " + token },
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      status.textContent = (body.error && body.error.message) || "The download failed.";
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = "contract-signed.pdf";
    link.click();
    status.textContent = "Saved. This link has now been used.";
  });
})();
