// relayd console: relative times, keyboard moves, and the live event list.
// Every value shown comes from a webhook sender: this script only ever
// sets textContent and attributes it chose, never HTML.
(function () {
  "use strict";

  var OUTCOMES = ["accepted", "duplicate", "rejected", "queued", "delivered", "partial", "dead",
    "filtered", "filter_error", "template_error", "superseded", "limited"];

  function badgeClass(word) {
    return OUTCOMES.indexOf(word) >= 0 ? "b-" + word.replace(/_/g, "-") : "b-other";
  }

  function rel(t) {
    var d = (Date.now() - t.getTime()) / 1000;
    if (d < 0) return "just now";
    if (d < 60) return Math.floor(d) + "s ago";
    if (d < 3600) return Math.floor(d / 60) + "m ago";
    if (d < 172800) return Math.floor(d / 3600) + "h ago";
    return Math.floor(d / 86400) + "d ago";
  }

  function abs(t) {
    return t.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function refreshTimes() {
    var ts = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < ts.length; i++) {
      var t = new Date(ts[i].getAttribute("datetime"));
      if (!isNaN(t)) ts[i].textContent = rel(t);
    }
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function eventURL(id) {
    return "/ui/events/" + encodeURIComponent(id);
  }

  // outcomesCell fills a row's last cell from a record summary.
  function outcomesCell(td, ev) {
    td.textContent = "";
    if (ev.kind === "accepted") {
      var routes = ev.routes || [];
      if (routes.length === 0) td.appendChild(el("span", "badge b-other", "no route"));
      for (var i = 0; i < routes.length; i++) {
        td.appendChild(el("span", "badge " + badgeClass(routes[i].outcome), routes[i].route + ": " + routes[i].outcome));
        td.appendChild(document.createTextNode(" "));
      }
    } else {
      td.appendChild(el("span", "badge " + badgeClass(ev.kind), ev.kind + (ev.status ? " " + ev.status : "")));
      if (ev.reason) {
        td.appendChild(document.createTextNode(" "));
        td.appendChild(el("span", "why", ev.reason));
      }
    }
  }

  function row(ev) {
    var tr = el("tr", "new");
    tr.setAttribute("data-id", ev.id);
    tr.setAttribute("data-href", eventURL(ev.id));
    var when = el("td", "when");
    var a = el("a");
    a.href = eventURL(ev.id);
    var t = new Date(ev.received_at);
    var time = el("time", null, rel(t));
    time.setAttribute("datetime", ev.received_at);
    time.title = abs(t);
    a.appendChild(time);
    when.appendChild(a);
    when.appendChild(el("span", "abs", abs(t)));
    tr.appendChild(when);
    tr.appendChild(el("td", null, ev.source));
    tr.appendChild(el("td", "wrap", ev.event || ""));
    tr.appendChild(el("td", "wrap mono", ev.delivery));
    var oc = el("td", "outcomes");
    outcomesCell(oc, ev);
    tr.appendChild(oc);
    return tr;
  }

  // live polls the newest page every few seconds while the tab is visible:
  // new events go on top, the outcomes of shown ones follow dispatch.
  function live() {
    var table = document.getElementById("events");
    if (!table || table.getAttribute("data-live") !== "1") return;
    var tbody = table.tBodies[0];
    var badge = document.getElementById("live");
    var params = new URLSearchParams(location.search);
    params.delete("before");
    params.set("limit", "50");
    var busy = false;

    function tick() {
      if (document.hidden || busy) return;
      busy = true;
      fetch("/ui/events.json?" + params.toString(), { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        })
        .then(function (page) {
          var byID = {};
          var shown = tbody.querySelectorAll("tr[data-id]");
          for (var i = 0; i < shown.length; i++) byID[shown[i].getAttribute("data-id")] = shown[i];
          var top = shown.length ? shown[0].getAttribute("data-id") : "";
          var fresh = [];
          (page.events || []).forEach(function (ev) {
            if (byID[ev.id]) {
              outcomesCell(byID[ev.id].lastElementChild, ev);
            } else if (ev.id > top) {
              fresh.push(ev);
            }
          });
          for (var j = fresh.length - 1; j >= 0; j--) tbody.insertBefore(row(fresh[j]), tbody.firstChild);
          if (fresh.length) {
            table.hidden = false;
            var empty = document.getElementById("empty");
            if (empty) empty.hidden = true;
          }
          while (tbody.rows.length > 200) tbody.deleteRow(-1);
          if (badge) { badge.textContent = "live"; badge.className = "live"; }
        })
        .catch(function () {
          if (badge) { badge.textContent = "live updates failed, retrying"; badge.className = "live paused"; }
        })
        .then(function () { busy = false; });
    }

    function visibility() {
      if (!badge) return;
      badge.textContent = document.hidden ? "paused" : "live";
      badge.className = document.hidden ? "live paused" : "live";
      if (!document.hidden) tick();
    }
    document.addEventListener("visibilitychange", visibility);
    // A filter that matches little makes the server read far back for
    // each page: poll it less often.
    var filtered = params.get("source") || params.get("route") || params.get("outcome");
    setInterval(tick, filtered ? 15000 : 3000);
  }

  // keys: j/k move through the rows, Enter opens one, / focuses the filter.
  function keys() {
    var sel = -1;
    function rows() { return document.querySelectorAll("tr[data-href]"); }
    function select(i) {
      var rs = rows();
      if (!rs.length) return;
      if (sel >= 0 && sel < rs.length) rs[sel].classList.remove("sel");
      sel = Math.max(0, Math.min(rs.length - 1, i));
      rs[sel].classList.add("sel");
      rs[sel].scrollIntoView({ block: "nearest" });
    }
    document.addEventListener("keydown", function (e) {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      var tag = (e.target && e.target.tagName) || "";
      if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") {
        if (e.key === "Escape") e.target.blur();
        return;
      }
      var rs = rows();
      if (e.key === "j") { select(sel + 1); e.preventDefault(); }
      else if (e.key === "k") { select(sel - 1); e.preventDefault(); }
      else if (e.key === "Enter" && sel >= 0 && sel < rs.length) {
        location.href = rs[sel].getAttribute("data-href");
        e.preventDefault();
      } else if (e.key === "/") {
        var f = document.getElementById("filter-first");
        if (f) { f.focus(); e.preventDefault(); }
      }
    });
  }

  // The dry-run page loads the chosen route's template and filter, unless
  // they were edited.
  function dryRun() {
    var route = document.getElementById("route");
    var tpl = document.getElementById("template");
    var filter = document.getElementById("filter");
    if (!route || !tpl) return;
    var t0 = tpl.value, f0 = filter ? filter.value : "";
    route.addEventListener("change", function () {
      if (tpl.value === t0 && (!filter || filter.value === f0)) {
        location.search = "?route=" + encodeURIComponent(route.value);
      }
    });
  }

  function start() {
    refreshTimes();
    setInterval(refreshTimes, 15000);
    keys();
    live();
    dryRun();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
