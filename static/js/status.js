// The console's status card: polls a small JSON endpoint and swaps the card in place, so
// "Waiting for your first pull" turns into "Connected" without a reload. A static file (no
// inline script) so the pages can run under a strict Content-Security-Policy.
(function () {
  var box = document.querySelector("[data-status-url]");
  if (!box) return;
  var url = box.dataset.statusUrl;
  var every = parseInt(box.dataset.statusEvery || "3000", 10);
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && typeof data.html === "string") {
          box.innerHTML = data.html;
          box.dataset.state = data.state;
        }
      })
      .catch(function () { /* offline for a moment: the next poll tries again */ })
      .then(function () { setTimeout(poll, every); });
  }
  setTimeout(poll, every);
})();
