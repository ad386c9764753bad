// Copy buttons, tabs and confirmations. No framework, no CDN.
(function () {
  // Widths from data attributes, set through the CSSOM: the CSP allows no inline style.
  document.querySelectorAll("[data-percent]").forEach(function (bar) {
    var percent = Math.max(0, Math.min(100, Number(bar.dataset.percent) || 0));
    bar.style.width = percent + "%";
  });
  function copyText(text, button) {
    var done = function () {
      var old = button.textContent; button.textContent = "✓"; button.dataset.copied = text;
      setTimeout(function () { button.textContent = old; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, done);
    } else {
      var area = document.createElement("textarea");
      area.value = text; document.body.appendChild(area); area.select();
      try { document.execCommand("copy"); } finally { document.body.removeChild(area); }
      done();
    }
  }
  document.addEventListener("click", function (event) {
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.dataset.copy);
      if (source) copyText(source.textContent.trim(), copy);
    }
    var tab = event.target.closest("[data-tab]");
    if (tab) {
      document.querySelectorAll(".tab").forEach(function (t) { t.classList.toggle("active", t === tab); });
      document.querySelectorAll(".tabpanel").forEach(function (p) {
        p.classList.toggle("active", p.id === "tab-" + tab.dataset.tab);
      });
    }
  });
  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-autosubmit]")) event.target.form.submit();
  });
  document.addEventListener("submit", function (event) {
    var message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
