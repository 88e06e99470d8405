// Keeps the page current without a full reload: polls /api/v1/state, and when the view changed
// fetches the page again and swaps <main>; ticks the "for 5m" health clocks every second.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !window.fetch || !window.DOMParser) return;
  var last = main.getAttribute("data-updated");
  function dur(s) {
    s = Math.max(0, Math.floor(s));
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return d ? d + "d " + h + "h" : h ? h + "h " + m + "m" : m ? m + "m " + (s % 60) + "s" : s + "s";
  }
  function tick() {
    var els = document.querySelectorAll("[data-since]");
    for (var i = 0; i < els.length; i++) {
      var t = Date.parse(els[i].getAttribute("data-since"));
      if (!isNaN(t)) els[i].textContent = "for " + dur((Date.now() - t) / 1000);
    }
  }
  function poll() {
    fetch("api/v1/state", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s || s.updatedAt === last) return null;
        return fetch("./", { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) {
            if (!html) return;
            var next = new DOMParser().parseFromString(html, "text/html").getElementById("main");
            var now = document.getElementById("main");
            if (!next || !now) return;
            // Keep keyboard focus on the same link across the swap.
            var focused = document.activeElement;
            var href = focused && now.contains(focused) ? focused.getAttribute("href") : null;
            var fresh = document.importNode(next, true);
            now.replaceWith(fresh);
            if (href) {
              var links = fresh.querySelectorAll("a[href]");
              for (var i = 0; i < links.length; i++) {
                if (links[i].getAttribute("href") === href) { links[i].focus(); break; }
              }
            }
            last = next.getAttribute("data-updated");
            document.documentElement.setAttribute("data-refreshed", String(Date.now()));
            tick();
          });
      })
      .catch(function () {});
  }
  setInterval(poll, 5000);
  setInterval(tick, 1000);
  tick();
})();
