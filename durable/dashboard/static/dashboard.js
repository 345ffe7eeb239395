// pgdurable dashboard: live regions, select-all, confirmations. No framework, no build.
(function () {
  "use strict";
  const dot = document.getElementById("live-dot");
  let inFlight = false;
  let again = false;

  // Re-fetch this page and swap every region marked data-live (forms outside them keep
  // what the user typed).
  async function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    try {
      const response = await fetch(window.location.href, { headers: { "X-Durable-Live": "1" }, credentials: "same-origin" });
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      document.querySelectorAll("[data-live]").forEach(function (region) {
        const fresh = doc.getElementById(region.id);
        if (!fresh || fresh.innerHTML === region.innerHTML) return;
        const checked = new Set(Array.from(region.querySelectorAll("input[type=checkbox]:checked")).map(function (c) { return c.value; }));
        const open = new Set(Array.from(region.querySelectorAll("details[open]")).map(function (d, i) { return i; }));
        region.innerHTML = fresh.innerHTML;
        region.querySelectorAll("input[type=checkbox]").forEach(function (c) { if (checked.has(c.value)) c.checked = true; });
        region.querySelectorAll("details").forEach(function (d, i) { if (open.has(i)) d.open = true; });
        region.dataset.updated = String(Date.now());
      });
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
    } catch (e) {
      /* the server is away: the next event tries again */
    } finally {
      inFlight = false;
      if (again) { again = false; refresh(); }
    }
  }

  if (document.querySelector("[data-live]") && window.EventSource) {
    const meta = document.querySelector("meta[name=durable-base]");
    const source = new EventSource((meta ? meta.content : "") + "/events");
    source.addEventListener("refresh", function () {
      if (dot) dot.classList.add("on");
      if (!document.hidden) refresh();
    });
    source.onerror = function () { if (dot) dot.classList.remove("on"); };
  }

  document.addEventListener("change", function (event) {
    const all = event.target.closest("[data-select-all]");
    if (!all) return;
    const table = all.closest("table");
    table.querySelectorAll("input[name=run_id]").forEach(function (c) { c.checked = all.checked; });
  });

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });
})();
